"""The serialized pattern state of one card (msgpack via msgspec), and its changelog keys.

Pattern state shares the fraud pipeline's changelog topic and transactions with the window
state: a card's record (whole state or head) goes inside the card's combined record
(``features.state.FraudCardV1``, under the card's key), its slices under ``PATTERN_KEY_PREFIX``
+ their slice key, the partition's clock under ``PATTERN_META_KEY`` (a card id that starts with
NUL is escaped: ``ESCAPE_PREFIX``). Changelogs written before the combined record hold the card
records under ``PATTERN_KEY_PREFIX + card_id``. To evolve the format add a ``...V2`` with a new
tag; never change a released struct.
"""

from __future__ import annotations

import msgspec

PATTERN_KEY_PREFIX = "\x00pattern:"
PATTERN_META_KEY = "\x00pattern-meta"


class PatternStateV1(msgspec.Struct, array_like=True, tag="c1"):
    """One card's pattern state. Times are ages relative to ``last`` (>= 0), except the
    profile's ``updated_at``.

    ``rules``: the rule set's fingerprint (masks and runs only mean something under it).
    ``ages``/``kinds``/``masks``/``ids``: the buffered events, oldest first (kind 0 transaction,
    1 profile change; mask: the predicates they satisfied). ``runs``: the partial matches,
    ``(rule, step, taken, start age, event ids)``. ``done``: per rule, the ages of the matches
    completed within its ``within``. ``profile``: the last profile the card joined,
    ``(updated_at, home_lat, home_lon)``.
    """

    rules: str
    last: int
    ages: list[int]
    kinds: list[int]
    masks: list[int]
    ids: list[str]
    runs: list[tuple[int, int, int, int, list[str]]]
    done: list[list[int]]
    profile: tuple[int, float, float] | None


class PatternStateV2(msgspec.Struct, array_like=True, tag="c2"):
    """One card's pattern state in the engine's own shapes, so writing it (once per touched card
    per batch) builds no intermediate lists: V1's ages cost about 5 us per card to compute.

    ``events``: the buffered ``(event_time, kind, mask, id)``, oldest first. ``runs``: per rule,
    the partial matches ``(step, taken, start event_time, event ids)``. ``done``: per rule, the
    event times of the matches completed within its ``within``. ``rules``, ``last`` and
    ``profile`` as in V1.
    """

    rules: str
    last: int
    events: list[tuple[int, int, int, str]]
    runs: list[list[tuple[int, int, int, tuple[str, ...]]]]
    done: list[list[int]]
    profile: tuple[int, float, float] | None


class PatternHeadV3(msgspec.Struct, array_like=True, tag="c3"):
    """One card's pattern state without its event buffer, which is in ``PatternSliceV3``
    records (the sliced changelog, ``features._engine``). Fields as in V2."""

    rules: str
    last: int
    runs: list[list[tuple[int, int, int, tuple[str, ...]]]]
    done: list[list[int]]
    profile: tuple[int, float, float] | None


class PatternSliceV3(msgspec.Struct, array_like=True, tag="cs3"):
    """The buffered events of one card in one changelog slice, oldest first (as V2's)."""

    events: list[tuple[int, int, int, str]]


pattern_state_decoder = msgspec.msgpack.Decoder(PatternStateV1 | PatternStateV2 | PatternHeadV3)
pattern_slice_decoder = msgspec.msgpack.Decoder(PatternSliceV3)
