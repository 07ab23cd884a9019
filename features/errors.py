"""Errors of the feature engine, under ``rtml.errors.RtmlError``.

    RtmlError
    └── FeatureError
        ├── PartitionNotAssigned   an event or state for a partition this engine does not own
        ├── StateDecodeError       a changelog record that cannot be restored (format, version)
        └── ReplayInputError       a replay input file is missing or is not a stream file

Late events are not errors: the engines report them in their results (dead-letter reason
``late``).
"""

from __future__ import annotations

from rtml.errors import RtmlError


class FeatureError(RtmlError):
    """Root of the feature engine's errors."""


class PartitionNotAssigned(FeatureError):
    """The engine was handed work for a partition it was not assigned (or that was revoked)."""

    def __init__(self, partition: int) -> None:
        super().__init__(f"partition {partition} is not assigned to this engine")
        self.partition = partition


class StateDecodeError(FeatureError):
    """A serialized state record could not be restored. Carries where it came from."""

    def __init__(self, partition: int, key: str | None, message: str) -> None:
        where = f"partition {partition}" + (f" key {key!r}" if key is not None else " metadata")
        super().__init__(f"cannot restore feature state for {where}: {message}")
        self.partition = partition
        self.key = key


class ReplayInputError(FeatureError):
    """A replay input is missing or unreadable. Carries the path (and line, if any)."""

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
