"""The online store on the real Redis: the guarded write (an older row never overwrites a newer
one), its packed arguments across chunks, TTLs, exact event times, and the guarded delete."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from store.online import CHUNK, OnlineStore

pytestmark = pytest.mark.asyncio


def _store(redis_client: aioredis.Redis, redis_prefix: str, ttl_ms: int = 60_000) -> OnlineStore:
    return OnlineStore(redis_client, namespace=redis_prefix.rstrip(":"), ttl_ms=ttl_ms)


async def test_an_older_row_never_overwrites_a_newer_one(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = _store(redis_client, redis_prefix)
    assert await store.write("fraud", [("c1", 200, b"new"), ("c2", 100, b"two")]) == 2
    # c1: older (skipped), c2: same time (written: a replay rewrites identical values), c3: new.
    written = await store.write(
        "fraud", [("c1", 150, b"old"), ("c2", 100, b"two'"), ("c3", 5, b"3")]
    )
    assert written == 2
    rows = await store.read("fraud", ["c1", "c2", "c3", "absent"])
    assert [(r.payload, r.event_time) if r else None for r in rows] == [
        (b"new", 200),
        (b"two'", 100),
        (b"3", 5),
        None,
    ]
    assert await store.write("fraud", [("c1", 201, b"newer")]) == 1
    (row,) = await store.read("fraud", ["c1"])
    assert row is not None and row.payload == b"newer" and row.written_at > 0


async def test_many_chunks_keep_keys_and_values_aligned(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = _store(redis_client, redis_prefix)
    n = 2 * CHUNK + 7
    rows = [(f"card-{i}", 1_000 + i, f'{{"i": {i}}}'.encode() + bytes([i % 256])) for i in range(n)]
    assert await store.write("fraud", rows) == n
    stored = await store.read("fraud", [entity for entity, _, _ in rows])
    assert [(r.payload, r.event_time) if r else None for r in stored] == [
        (payload, t) for _, t, payload in rows
    ]


async def test_rows_expire_and_times_are_stored_exactly(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = _store(redis_client, redis_prefix, ttl_ms=30_000)
    big = 2**62 + 1  # beyond a double's exact integers: must round-trip as written
    assert await store.write("fraud", [("c1", big, b"x"), ("c2", -5, b"y")]) == 2
    rows = await store.read("fraud", ["c1", "c2"])
    assert [r.event_time if r else None for r in rows] == [big, -5]
    ttl = await redis_client.pttl(store.key("fraud", "c1"))
    assert 0 < ttl <= 30_000


async def test_delete_removes_only_rows_not_newer_than_the_tombstone(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = _store(redis_client, redis_prefix)
    await store.write("profile", [("u1", 10, b"a"), ("u2", 30, b"b")])
    assert await store.delete("profile", [("u1", 20), ("u2", 20), ("u3", 20)]) == 1
    rows = await store.read("profile", ["u1", "u2"])
    assert rows[0] is None and rows[1] is not None and rows[1].payload == b"b"


async def test_unguarded_writes_keep_the_last_one(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = _store(redis_client, redis_prefix)
    await store.write("profile", [("u1", 50, b"first")], guarded=False)
    await store.write("profile", [("u1", 10, b"second")], guarded=False)
    (row,) = await store.read("profile", ["u1"])
    assert row is not None and (row.payload, row.event_time) == (b"second", 10)


async def test_writes_survive_a_flushed_script_cache(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """A restarted Redis forgets its scripts: the store reloads them (NOSCRIPT) and goes on."""
    store = _store(redis_client, redis_prefix)
    assert await store.write("fraud", [("c1", 1, b"a")]) == 1
    await redis_client.script_flush()
    assert await store.write("fraud", [("c1", 2, b"b"), ("c2", 1, b"c")]) == 2
    await redis_client.script_flush()
    assert await store.delete("fraud", [("c2", 5)]) == 1
    rows = await store.read("fraud", ["c1", "c2"])
    assert rows[0] is not None and rows[0].payload == b"b" and rows[1] is None
