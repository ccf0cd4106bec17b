// The client: where the daemon is, the API key, timeouts and retries; and the resources.

import { inspect } from 'node:util';

import { InvalidArgumentError } from './errors.js';
import { Projects } from './projects.js';
import { Runs } from './runs.js';
import { Sandbox, Sandboxes, Snapshots } from './sandboxes.js';
import { type RetryInfo, Transport } from './transport.js';
import type { PolicyDecision, SandboxRequest } from './types.js';

export const VERSION = '0.1.0';

export interface ClientOptions {
  /** The daemon, e.g. "http://127.0.0.1:8080". Default: $SANDBOXD_URL, else that address. */
  url?: string;
  /** The API key. Default: $SANDBOXD_API_KEY. Sent as `Authorization: Bearer`, never shown. */
  apiKey?: string;
  /** Each request's timeout in ms (until its whole answer; a stream's head). Default 60 000. */
  timeoutMs?: number;
  /** Retries of an idempotent request (GET, HEAD) after a connection error, a 503 or a 429.
   * Default 5; 0 turns retrying off. Other methods are never retried. */
  maxRetries?: number;
  /** The first retry's delay ceiling; it doubles each time up to `retryMaxMs`. Default 250. */
  retryBaseMs?: number;
  /** Default 8 000. A Retry-After from the server wins (up to 60 s). */
  retryMaxMs?: number;
  /** Called before each retry (method, path, attempt, delay, reason): for logs and metrics. */
  onRetry?: (info: RetryInfo) => void;
}

/** The sandboxd client.
 *
 * ```ts
 * const sbx = new Sandboxd();                       // $SANDBOXD_URL, $SANDBOXD_API_KEY
 * const box = await sbx.sandboxes.create();
 * const r = await box.run(['echo', 'hi']);         // r.stdout: Buffer "hi\n"
 * ```
 */
export class Sandboxd {
  readonly runs: Runs;
  readonly projects: Projects;
  readonly sandboxes: Sandboxes;
  readonly snapshots: Snapshots;
  #t: Transport;

  constructor(opts: ClientOptions = {}) {
    const url = opts.url ?? process.env['SANDBOXD_URL'] ?? 'http://127.0.0.1:8080';
    const apiKey = opts.apiKey ?? process.env['SANDBOXD_API_KEY'];
    try {
      this.#t = new Transport({
        url,
        apiKey: apiKey || undefined,
        timeoutMs: opts.timeoutMs ?? 60_000,
        maxRetries: opts.maxRetries ?? 5,
        retryBaseMs: opts.retryBaseMs ?? 250,
        retryMaxMs: opts.retryMaxMs ?? 8_000,
        onRetry: opts.onRetry,
        userAgent: `sandboxd-sdk-typescript/${VERSION} node/${process.versions.node}`,
      });
    } catch (e) {
      if (e instanceof TypeError) throw new InvalidArgumentError(`not a URL: ${JSON.stringify(url)}`, { code: 'invalid_argument' });
      throw e;
    }
    this.runs = new Runs(this.#t);
    this.projects = new Projects(this.#t);
    this.sandboxes = new Sandboxes(this.#t);
    this.snapshots = new Snapshots(this.#t);
  }

  /** The daemon's address. */
  get url(): string {
    return this.#t.baseUrl.href;
  }

  /** The daemon's node name, limits, backends and isolation. */
  info(): Promise<Record<string, unknown>> {
    return this.#t.json('GET', 'v1/info');
  }

  /** `{ok: true}` when the daemon is up. */
  health(): Promise<{ ok: boolean }> {
    return this.#t.json('GET', 'healthz');
  }

  /** What the command policy would decide for a command (argv, or one command line). */
  evaluatePolicy(command: string[] | string, opts: { apiKeyName?: string; labels?: Record<string, string> } = {}): Promise<PolicyDecision> {
    return this.#t.json('POST', 'v1/policy:evaluate', {
      body: {
        ...(Array.isArray(command) ? { argv: command } : { command }),
        ...(opts.apiKeyName ? { api_key_name: opts.apiKeyName } : {}),
        ...(opts.labels ? { labels: opts.labels } : {}),
      },
    });
  }

  /** Shorthand for `sandboxes.create()`. */
  createSandbox(request: SandboxRequest = {}): Promise<Sandbox> {
    return this.sandboxes.create(request);
  }

  toString(): string {
    return `Sandboxd(${this.url})`;
  }

  toJSON(): object {
    return { url: this.url };
  }

  [inspect.custom](): string {
    return `Sandboxd { url: '${this.url}' }`;
  }
}
