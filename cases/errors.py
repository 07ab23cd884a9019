"""Errors of case management, under rtml's root error."""

from __future__ import annotations

from rtml.errors import RtmlError


class CaseError(RtmlError):
    """Something about one case; ``event_id`` names it."""

    def __init__(self, event_id: str, message: str) -> None:
        super().__init__(message)
        self.event_id = event_id


class CaseNotFound(CaseError):
    def __init__(self, event_id: str) -> None:
        super().__init__(event_id, f"no case for event {event_id!r}")


class CaseNotOpen(CaseError):
    """The case was decided already (a second analyst, a double click): the first one stands."""

    def __init__(self, event_id: str, status: str) -> None:
        super().__init__(event_id, f"case {event_id!r} is already {status}")
        self.status = status
