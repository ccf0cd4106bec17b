"""Python client of sandboxd, the Linux sandbox supervisor.

    import sandboxd
    client = sandboxd.Client()          # $SANDBOXD_URL, $SANDBOXD_API_KEY
    with client.sandboxes.create() as sbx:
        print(sbx.run(["echo", "hi"]).stdout)

Synchronous; HTTP through the standard library, streams (events, terminals, file watches) through
the `websockets` package.
"""

from .client import (Change, Client, Event, EventStream, Files, Process, ProcessEvents, Run,
                     Runs, Sandbox, SandboxChanges, Sandboxes, Terminal)
from .projects import Plan, Project, Projects
from ._http import RetryPolicy
from .errors import (AlreadyExists, Conflict, ConnectionFailed, FailedPrecondition,
                     HeadersTooLarge, Internal, InvalidArgument, MethodNotAllowed, NotFound,
                     PayloadTooLarge, PermissionDenied, ProtocolError, RangeNotSatisfiable,
                     RequestTimeout, ResourceExhausted, SandboxdError, Timeout, Unauthenticated,
                     Unavailable, UpgradeRequired)

__version__ = "0.1.0"

__all__ = [
    "Change", "Client", "Event", "EventStream", "Files", "Process", "ProcessEvents", "Run",
    "Runs", "Sandbox", "SandboxChanges", "Sandboxes", "Terminal", "Plan", "Project", "Projects",
    "RetryPolicy",
    "SandboxdError", "InvalidArgument", "Unauthenticated", "PermissionDenied", "NotFound",
    "MethodNotAllowed", "RequestTimeout", "AlreadyExists", "FailedPrecondition",
    "PayloadTooLarge", "RangeNotSatisfiable", "UpgradeRequired", "HeadersTooLarge",
    "ResourceExhausted", "Internal", "Unavailable", "ConnectionFailed", "Timeout",
    "ProtocolError", "Conflict",
]
