"""Same seed and arguments, same bytes; a different seed, a different stream."""

from __future__ import annotations

from dataclasses import replace

from producers.records import Stream


def test_same_seed_same_bytes(generated, make_stream) -> None:
    again = make_stream()
    assert again.records == generated.records  # keys, values, times, defects and labels


def test_different_seed_different_stream(generated, make_stream, test_config) -> None:
    other = make_stream(replace(test_config, seed=43), days=1)
    first_day = generated.records[: len(other.records)]
    assert [r.value for r in other.records] != [r.value for r in first_day]
    # Event ids carry a tag derived from the seed: two runs never share one.
    for stream in (Stream.TRANSACTIONS, Stream.USER_EVENTS):
        theirs = {e.event_id for e in other.valid(stream)}
        assert theirs and not theirs & {e.event_id for e in generated.valid(stream)}


def test_event_ids_are_unique(generated) -> None:
    for stream in (Stream.TRANSACTIONS, Stream.USER_EVENTS):
        ids = [e.event_id for e in generated.valid(stream)]
        assert len(ids) == len(set(ids)) > 1000


def test_seq_numbers_the_emission_order(generated) -> None:
    assert [r.seq for r in generated.records] == list(range(len(generated.records)))


def test_a_stream_switched_off_leaves_the_others_unchanged(
    generated, make_stream, test_config
) -> None:
    without_sessions = make_stream(replace(test_config, sessions_per_user_day=0.0))

    def transactions(g) -> list:
        return [(r.value, r.defect, r.label) for r in g.records if r.stream is Stream.TRANSACTIONS]

    assert not any(r.stream is Stream.USER_EVENTS for r in without_sessions.records)
    assert transactions(without_sessions) == transactions(generated)


def test_a_longer_window_starts_with_the_same_records(make_stream, test_config) -> None:
    one_day = make_stream(replace(test_config, users=300), days=1)
    two_days = make_stream(replace(test_config, users=300), days=2)
    assert len(one_day.records) > 2000
    assert two_days.records[:2000] == one_day.records[:2000]
