"""What the generator hands out (``Record``), and the drafts it builds them from.

A ``Record`` is one Kafka record as it will be sent: a logical stream (mapped to a topic name by
the sink), a key, the exact value bytes (``None`` for a tombstone) and the ground truth that must
stay out of the event: the dead-letter reason a malformed value is built to fail with, and the
fraud label of a fraudulent transaction.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

from rtml.settings import Topics


class Stream(StrEnum):
    """The input streams the generator writes; values are the default topic names."""

    TRANSACTIONS = "transactions"
    USER_EVENTS = "user-events"
    USER_PROFILES = "user-profiles"


def topic_names(topics: Topics) -> dict[Stream, str]:
    """The configured topic of every stream."""
    return {
        Stream.TRANSACTIONS: topics.transactions.name,
        Stream.USER_EVENTS: topics.user_events.name,
        Stream.USER_PROFILES: topics.user_profiles.name,
    }


class Record(NamedTuple):
    seq: int  # position in the emitted stream (all streams together, labels excluded)
    stream: Stream
    key: str  # card_id, user_id or user_id
    value: bytes | None  # the exact bytes to send; None is a profile tombstone or a null value
    event_time: int  # epoch ms in the value (the deletion time for a tombstone)
    defect: str | None  # the dead-letter reason this value fails with; None when valid
    label: bytes | None  # encoded FraudLabel of a fraudulent transaction, else None


class Drafts:
    """The events of one chunk of simulated time, before ordering, defects and encoding.

    Parallel lists: appending is cheap and the stream sorts them once per chunk.
    """

    __slots__ = ("events", "keys", "labels", "streams", "times", "users")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.streams: list[Stream] = []
        self.keys: list[str] = []
        self.events: list[Any] = []  # a contract struct, or None for a tombstone
        self.users: list[int] = []  # the user an event belongs to (for first-seen profiles)
        self.labels: list[Any] = []  # a FraudLabel, or None

    def add(
        self,
        time: int,
        stream: Stream,
        key: str,
        event: Any,
        user: int,
        label: Any = None,
    ) -> None:
        self.times.append(time)
        self.streams.append(stream)
        self.keys.append(key)
        self.events.append(event)
        self.users.append(user)
        self.labels.append(label)

    def extend(
        self,
        times: list[int],
        stream: Stream,
        keys: list[str],
        events: list[Any],
        users: list[int],
    ) -> None:
        """Add many unlabeled events of one stream."""
        self.times.extend(times)
        self.streams.extend([stream] * len(times))
        self.keys.extend(keys)
        self.events.extend(events)
        self.users.extend(users)
        self.labels.extend([None] * len(times))

    def __len__(self) -> int:
        return len(self.times)


class EventIds:
    """Deterministic event ids: ``<prefix>-<run tag>-<counter>``.

    The run tag comes from the seed, so two seeds never share ids; the same seed repeats them.
    """

    __slots__ = ("_next", "_prefix")

    def __init__(self, prefix: str, tag: str) -> None:
        self._prefix = f"{prefix}-{tag}-"
        self._next = 0

    def take(self, n: int) -> list[str]:
        start, prefix = self._next, self._prefix
        self._next += n
        return [f"{prefix}{i}" for i in range(start, start + n)]

    def one(self) -> str:
        self._next += 1
        return f"{self._prefix}{self._next - 1}"
