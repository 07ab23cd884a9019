"""The compacted profiles topic: a profile before a user's first event, updates, tombstones."""

from __future__ import annotations

from collections import defaultdict

import pytest

from producers.records import Stream


def _by_user(records) -> tuple[dict, dict]:
    profiles, activity = defaultdict(list), defaultdict(list)
    for r in records:
        if r.stream is Stream.USER_PROFILES:
            profiles[r.key].append(r)
    for stream, key in ((Stream.TRANSACTIONS, "user_id"), (Stream.USER_EVENTS, "user_id")):
        for r in records:
            if r.stream is stream and r.defect is None:
                activity[_user_of(r, key)].append(r)
    return profiles, activity


def _user_of(record, key: str) -> str:
    # Both events carry user_id; the transaction's key is the card.
    start = record.value.index(b'"user_id":"') + len(b'"user_id":"')
    return record.value[start : record.value.index(b'"', start)].decode()


def test_every_active_user_has_a_profile_before_acting(generated) -> None:
    profiles, activity = _by_user(generated.records)
    assert len(activity) > 1000
    before = 0
    for user, events in activity.items():
        first_event = min(r.event_time for r in events)
        assert min(r.event_time for r in profiles[user]) < first_event, user
        before += profiles[user][0].seq < events[0].seq
    # Emission order agrees, unless the profile itself was delayed.
    assert before / len(activity) > 0.9


def test_tombstones_delete_and_the_user_goes_quiet(generated) -> None:
    profiles, activity = _by_user(generated.records)
    tombstones = [
        r for r in generated.records if r.stream is Stream.USER_PROFILES and r.value is None
    ]
    config = generated.config
    expected = config.profile_delete_rate * config.users * 4  # four days
    assert len(tombstones) == pytest.approx(expected, rel=0.4)
    for t in tombstones:
        assert t.defect is None and t.label is None
        later = [r for r in activity[t.key] if r.event_time > t.event_time + 2 * 3_600_000]
        assert not later, (t, later[:3])
        # Nothing revives a deleted profile.
        assert not [p for p in profiles[t.key] if p.value is not None and p.seq > t.seq]


def test_updates_change_home_or_segment(generated) -> None:
    decoded = defaultdict(list)
    for p in generated.valid(Stream.USER_PROFILES):
        decoded[p.user_id].append(p)
    changed = [
        user
        for user, ps in decoded.items()
        if len({(p.home_lat, p.home_lon, p.segment) for p in ps}) > 1
    ]
    config = generated.config
    assert len(changed) == pytest.approx(config.profile_update_rate * config.users * 4, rel=0.4)
    for user in changed:
        ages = [p.account_age_days for p in sorted(decoded[user], key=lambda p: p.updated_at)]
        assert ages == sorted(ages)  # the account only gets older
