// Typed errors: one class per API `error.code`, each with `code`, `status` and `message`.
//
// The API answers every error as {"error": {"code", "message"}}; `errorFromResponse` turns that
// (or a status without such a body) into the matching class. Errors raised by the client itself
// (a connection that failed, a wait that ran out of time) have `status` 0.

/** The base of every error this SDK throws for the API or the connection to it. */
export class SandboxdError extends Error {
  /** The API's `error.code` (e.g. "not_found"), or the client's own for status 0. */
  readonly code: string;
  /** The HTTP status; 0 when no answer came (connection errors, client-side timeouts). */
  readonly status: number;
  /** Seconds the server asked to wait (`Retry-After`), when it did. */
  readonly retryAfterS?: number;

  constructor(message: string, opts: { code?: string; status?: number; retryAfterS?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = opts.code ?? 'unknown';
    this.status = opts.status ?? 0;
    if (opts.retryAfterS !== undefined) this.retryAfterS = opts.retryAfterS;
  }

  override toString(): string {
    return `${this.name} [${this.code}${this.status ? ' ' + this.status : ''}]: ${this.message}`;
  }
}

/** 400 invalid_argument: a field, parameter or body is wrong; the message names it. */
export class InvalidArgumentError extends SandboxdError {}
/** 400 bad_request: malformed HTTP, path or query (also a kind of invalid argument). */
export class BadRequestError extends InvalidArgumentError {}
/** 401 unauthenticated: no API key, or one the daemon does not know. */
export class UnauthenticatedError extends SandboxdError {}
/** 403 permission_denied: the key's role is too low, or the policy denies the command. */
export class PermissionDeniedError extends SandboxdError {}
/** 404 not_found: no such thing, or one that belongs to another submitter. */
export class NotFoundError extends SandboxdError {}
/** 405 method_not_allowed. */
export class MethodNotAllowedError extends SandboxdError {}
/** 408 request_timeout: the request did not reach the server in time. */
export class RequestTimeoutError extends SandboxdError {}
/** 409 already_exists: e.g. an idempotency key reused for another request, a snapshot name taken. */
export class AlreadyExistsError extends SandboxdError {}
/** 409 failed_precondition: the object is in the wrong state for the operation. */
export class FailedPreconditionError extends SandboxdError {}
/** One path where the host directory is no longer what a run found. */
export interface ApplyConflict {
  path: string;
  why: string;
}
/** 409 conflict: the host directory changed under a run's changes (`runs.apply`); nothing was
 * written. `conflicts` lists each path and why. */
export class ConflictError extends FailedPreconditionError {
  readonly conflicts: ApplyConflict[];

  constructor(message: string, opts: { code?: string; status?: number; retryAfterS?: number; cause?: unknown; conflicts?: ApplyConflict[] } = {}) {
    super(message, opts);
    this.conflicts = opts.conflicts ?? [];
  }
}
/** 413 payload_too_large. */
export class PayloadTooLargeError extends SandboxdError {}
/** 416 range_not_satisfiable. */
export class RangeNotSatisfiableError extends SandboxdError {}
/** 426 upgrade_required: a WebSocket route requested without the upgrade. */
export class UpgradeRequiredError extends SandboxdError {}
/** 429 resource_exhausted: a queue or a limit is full; `retryAfterS` says when to try again. */
export class ResourceExhaustedError extends SandboxdError {}
/** 431 headers_too_large. */
export class HeadersTooLargeError extends SandboxdError {}
/** 500 internal. */
export class InternalError extends SandboxdError {}
/** 503 unavailable: the server is shutting down, or a host feature is missing. */
export class UnavailableError extends SandboxdError {}
/** No answer: the daemon could not be reached or the connection broke (status 0). */
export class ConnectionError extends UnavailableError {}
/** A client-side deadline passed (a request's timeout, a wait's). Status 0. */
export class DeadlineExceededError extends SandboxdError {}

type ErrorClass = new (message: string, opts?: { code?: string; status?: number; retryAfterS?: number; cause?: unknown; conflicts?: ApplyConflict[] }) => SandboxdError;

const BY_CODE: Record<string, ErrorClass> = {
  invalid_argument: InvalidArgumentError,
  bad_request: BadRequestError,
  unauthenticated: UnauthenticatedError,
  permission_denied: PermissionDeniedError,
  not_found: NotFoundError,
  method_not_allowed: MethodNotAllowedError,
  request_timeout: RequestTimeoutError,
  already_exists: AlreadyExistsError,
  failed_precondition: FailedPreconditionError,
  conflict: ConflictError,
  payload_too_large: PayloadTooLargeError,
  range_not_satisfiable: RangeNotSatisfiableError,
  upgrade_required: UpgradeRequiredError,
  resource_exhausted: ResourceExhaustedError,
  headers_too_large: HeadersTooLargeError,
  internal: InternalError,
  unavailable: UnavailableError,
  deadline_exceeded: DeadlineExceededError,
};

const CODE_BY_STATUS: Record<number, string> = {
  400: 'invalid_argument',
  401: 'unauthenticated',
  403: 'permission_denied',
  404: 'not_found',
  405: 'method_not_allowed',
  408: 'request_timeout',
  409: 'failed_precondition',
  413: 'payload_too_large',
  416: 'range_not_satisfiable',
  426: 'upgrade_required',
  429: 'resource_exhausted',
  431: 'headers_too_large',
  500: 'internal',
  503: 'unavailable',
};

/** The error class for an API error code (SandboxdError for a code this SDK does not know). */
export function errorClassFor(code: string): ErrorClass {
  return BY_CODE[code] ?? SandboxdError;
}

/** Builds the typed error for an error answer: its status and body (JSON or not). */
export function errorFromResponse(status: number, body: string, retryAfterS?: number): SandboxdError {
  let code: string | undefined;
  let message: string | undefined;
  let conflicts: ApplyConflict[] | undefined;
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown }; conflicts?: unknown };
    if (parsed && typeof parsed === 'object' && parsed.error && typeof parsed.error === 'object') {
      if (typeof parsed.error.code === 'string') code = parsed.error.code;
      if (typeof parsed.error.message === 'string') message = parsed.error.message;
      if (Array.isArray(parsed.conflicts)) {
        conflicts = parsed.conflicts.map((c: { path?: unknown; why?: unknown }) => ({ path: String(c?.path), why: String(c?.why) }));
      }
    }
  } catch {
    // not JSON: the status decides
  }
  code ??= CODE_BY_STATUS[status] ?? (status >= 500 ? 'internal' : 'unknown');
  message ??= body.trim().slice(0, 500) || `HTTP ${status}`;
  const Cls = errorClassFor(code);
  return new Cls(message, {
    code,
    status,
    ...(retryAfterS !== undefined ? { retryAfterS } : {}),
    ...(conflicts !== undefined && Cls === ConflictError ? { conflicts } : {}),
  });
}
