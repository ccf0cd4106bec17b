"""Typed errors: one class per API ``error.code``.

Every error the daemon answers is ``{"error": {"code": "...", "message": "..."}}``; the SDK raises
the class registered for ``code`` (falling back on the HTTP status when the code is unknown), with
``.code``, ``.status`` (the HTTP status, or None when no response came) and ``.message``.
Nothing here ever holds the API key.
"""

__all__ = [
    "SandboxdError", "InvalidArgument", "Unauthenticated", "PermissionDenied", "NotFound",
    "MethodNotAllowed", "RequestTimeout", "AlreadyExists", "FailedPrecondition",
    "PayloadTooLarge", "RangeNotSatisfiable", "UpgradeRequired", "HeadersTooLarge",
    "ResourceExhausted", "Internal", "Unavailable", "ConnectionFailed", "Timeout",
    "ProtocolError", "Conflict", "error_from_response",
]


class SandboxdError(Exception):
    """Base of every error the SDK raises for the API or the connection to it."""

    code = "unknown"
    default_status = None

    def __init__(self, message, *, code=None, status=None, retry_after=None, method=None,
                 path=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.status = status if status is not None else None
        self.retry_after = retry_after
        self.method = method
        self.path = path

    def __str__(self):
        where = ""
        if self.method and self.path:
            where = " (%s %s)" % (self.method, self.path)
        status = " %d" % self.status if self.status is not None else ""
        return "%s%s: %s%s" % (self.code, status, self.message, where)

    def __repr__(self):
        return "%s(code=%r, status=%r, message=%r)" % (
            type(self).__name__, self.code, self.status, self.message)


class InvalidArgument(SandboxdError):
    """400: a malformed request or a bad value (``invalid_argument``, ``bad_request``)."""
    code = "invalid_argument"
    default_status = 400


class Unauthenticated(SandboxdError):
    """401: the API key is missing or unknown."""
    code = "unauthenticated"
    default_status = 401


class PermissionDenied(SandboxdError):
    """403: the key's role is too low, or the policy denies the command."""
    code = "permission_denied"
    default_status = 403


class NotFound(SandboxdError):
    """404: no such object (or one this key may not see), or no such route."""
    code = "not_found"
    default_status = 404


class MethodNotAllowed(SandboxdError):
    code = "method_not_allowed"
    default_status = 405


class RequestTimeout(SandboxdError):
    code = "request_timeout"
    default_status = 408


class AlreadyExists(SandboxdError):
    """409: e.g. an idempotency key reused for a different request."""
    code = "already_exists"
    default_status = 409


class FailedPrecondition(SandboxdError):
    """409: the object is not in a state that allows this (e.g. approving a running run)."""
    code = "failed_precondition"
    default_status = 409


class Conflict(FailedPrecondition):
    """409 ``conflict``: the host changed under a run's changes (``runs.apply``), and nothing was
    written. ``.conflicts`` lists them: ``[{"path": ..., "why": ...}]``."""
    code = "conflict"
    default_status = 409

    def __init__(self, message, *, conflicts=None, **kw):
        super().__init__(message, **kw)
        self.conflicts = list(conflicts or [])


class PayloadTooLarge(SandboxdError):
    code = "payload_too_large"
    default_status = 413


class RangeNotSatisfiable(SandboxdError):
    code = "range_not_satisfiable"
    default_status = 416


class UpgradeRequired(SandboxdError):
    code = "upgrade_required"
    default_status = 426


class HeadersTooLarge(SandboxdError):
    code = "headers_too_large"
    default_status = 431


class ResourceExhausted(SandboxdError):
    """429: a queue or quota is full; ``.retry_after`` holds the server's hint in seconds."""
    code = "resource_exhausted"
    default_status = 429


class Internal(SandboxdError):
    code = "internal"
    default_status = 500


class Unavailable(SandboxdError):
    """503: the daemon is shutting down or cannot serve this now."""
    code = "unavailable"
    default_status = 503


class ConnectionFailed(Unavailable):
    """No answer: the daemon could not be reached, or the connection broke (``.status`` None)."""
    code = "connection_failed"


class Timeout(SandboxdError):
    """A client-side wait ran out (``.status`` None)."""
    code = "timeout"


class ProtocolError(SandboxdError):
    """The daemon's answer was not what the API promises (e.g. not JSON)."""
    code = "protocol_error"


_BY_CODE = {}
for _cls in (InvalidArgument, Unauthenticated, PermissionDenied, NotFound, MethodNotAllowed,
             RequestTimeout, AlreadyExists, FailedPrecondition, Conflict, PayloadTooLarge,
             RangeNotSatisfiable, UpgradeRequired, HeadersTooLarge, ResourceExhausted, Internal,
             Unavailable):
    _BY_CODE[_cls.code] = _cls
_BY_CODE["bad_request"] = InvalidArgument
_BY_CODE["policy_denied"] = PermissionDenied

_BY_STATUS = {}
for _cls in (InvalidArgument, Unauthenticated, PermissionDenied, NotFound, MethodNotAllowed,
             RequestTimeout, FailedPrecondition, PayloadTooLarge, RangeNotSatisfiable,
             UpgradeRequired, HeadersTooLarge, ResourceExhausted, Internal, Unavailable):
    _BY_STATUS[_cls.default_status] = _cls


def error_class(code, status=None):
    """The class for an API error code (or, for an unknown code, for the HTTP status)."""
    cls = _BY_CODE.get(code)
    if cls is None and status is not None:
        cls = _BY_STATUS.get(status)
        if cls is None:
            cls = Internal if status >= 500 else SandboxdError
    return cls or SandboxdError


def error_from_response(status, body, *, retry_after=None, method=None, path=None):
    """Builds the typed error for an HTTP answer with ``status`` and raw ``body`` bytes."""
    import json
    code, message, conflicts = None, None, []
    try:
        doc = json.loads(body.decode("utf-8"))
        err = doc["error"]
        code, message = str(err["code"]), str(err["message"])
        conflicts = [{"path": str(c["path"]), "why": str(c["why"])}
                     for c in doc.get("conflicts") or []]
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        if message is None:
            text = body[:200].decode("utf-8", "replace").strip() if body else ""
            message = text or "HTTP %d without an error body" % status
    cls = error_class(code, status)
    extra = {"conflicts": conflicts} if issubclass(cls, Conflict) else {}
    return cls(message, code=code or cls.code, status=status, retry_after=retry_after,
               method=method, path=path, **extra)
