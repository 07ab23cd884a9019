"""The exceptions of rtml, under one root.

    RtmlError
    ├── ConfigError            settings or arguments are wrong; fix the configuration
    ├── ServiceError           a service (Kafka, Redis, Ray, Java, Maven) is missing or unreachable
    │   └── ServiceUnavailable     reachable later, perhaps: ``retriable`` is True
    ├── ModelError             a model raised on its input (not an outage): retrying the same
    │                          input fails again, so the consumers isolate and dead-letter it
    └── InvalidEvent           an event failed its contract; carries the dead-letter reason

Library errors are translated into these at the boundary (``raise ... from exc``), so the CLI can
print one clear line for every expected failure and callers can decide on ``retriable``.
"""

from __future__ import annotations


class RtmlError(Exception):
    """Root of every error rtml raises on purpose."""

    retriable: bool = False


class ConfigError(RtmlError):
    """The configuration or a command-line argument is invalid."""


class ServiceError(RtmlError):
    """A service rtml needs is missing, misconfigured or failed."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service


class ServiceUnavailable(ServiceError):
    """A service did not answer in time; trying again later may work."""

    retriable = True


class ModelError(RtmlError):
    """A model deployment raised on the input it was given (a poison row, say)."""

    def __init__(self, model: str, message: str) -> None:
        super().__init__(f"{model}: {message}")
        self.model = model
        self.message = message


class InvalidEvent(RtmlError):
    """An event broke its contract. ``reason`` is the dead-letter reason (a short slug)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
