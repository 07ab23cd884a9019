"""Errors of model artifacts, under ``rtml.errors.ConfigError`` (a wrong artifact is a wrong
configuration: fix it by pointing at another artifact or retraining, not by retrying).

    RtmlError
    └── ConfigError
        └── ArtifactError           an artifact is missing, unreadable or not what was asked for
            ├── FeatureMismatch         its features (names, order, version) differ from the code's
            └── ChecksumMismatch        a file's sha256 differs from the manifest's
"""

from __future__ import annotations

from pathlib import Path

from rtml.errors import ConfigError


class ArtifactError(ConfigError):
    """A model artifact cannot be used. ``path`` is the artifact directory (or file)."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(f"model artifact {path}: {message}")
        self.path = Path(path)
        self.message = message


class FeatureMismatch(ArtifactError):
    """The artifact was trained on other features than ``features.definitions`` defines now."""


class ChecksumMismatch(ArtifactError):
    """A file of the artifact was changed (or truncated) after export."""

    def __init__(self, path: Path | str, file: str, expected: str, actual: str) -> None:
        super().__init__(
            path, f"{file}: sha256 {actual[:12]}... differs from the manifest's {expected[:12]}..."
        )
        self.file = file
        self.expected = expected
        self.actual = actual
