"""Errors of the serving layer, under ``rtml.errors``.

    RtmlError
    ├── ConfigError
    │   └── ServingConfigError      the app's arguments or a model choice are wrong
    ├── ServiceUnavailable
    │   └── ModelNotLoaded          a replica has no model yet (or the artifact failed to load)
    └── InvalidRequest              a request broke its contract; ``status`` is the HTTP code,
                                    ``field`` the JSON path of the offending value (or None)

The HTTP ingress turns ``InvalidRequest`` into ``{"error", "message", "field"}`` with its status,
``ServiceUnavailable`` into a 503 and anything else into a 500 without details (the traceback
goes to the replica's log only).
"""

from __future__ import annotations

from rtml.errors import ConfigError, RtmlError, ServiceUnavailable


class ServingConfigError(ConfigError):
    """The Serve application's arguments (or a model version it names) are invalid."""


class ModelNotLoaded(ServiceUnavailable):
    """The deployment has no model to score with; retry once a replica has loaded one."""

    def __init__(self, deployment: str, message: str) -> None:
        super().__init__(deployment, message)
        self.deployment = deployment


class InvalidRequest(RtmlError):
    """A request is malformed or out of bounds. ``error`` is a short slug for clients."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        status: int = 422,
        error: str = "invalid_request",
    ) -> None:
        super().__init__(message if field is None else f"{field}: {message}")
        self.message = message
        self.field = field
        self.status = status
        self.error = error
