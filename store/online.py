"""The Redis online feature store: latest feature values per entity, for serving and for people.

Key layout (``{ns}`` is the namespace, ``rtml`` by default)::

    {ns}:{group}:{entity}   HASH  v = features (JSON object, name -> number/null/list)
                                  t = event_time (ms) of the event that produced them
                                  w = written_at (ms), when the consumer wrote them
                            TTL   ``ttl_ms`` after the last write (inactive entities expire)

``group`` is a feature group: ``fraud`` (entity card_id), ``recsys`` (user_id),
``profile`` (user_id, the materialized user-profiles table), ``recs`` (user_id, the latest
top-K the recommendation consumers ranked, a ``Recommendation``). The group names below are
the one place both the consumers (writers) and serving (readers) take them from. A fraud row's
``v`` is ~1.1 KB: the local redis-server keeps such hashes in the compact listpack encoding
(``hash-max-listpack-value 2048`` in ``infra/redis_server.py``); set it on a Redis of your own
for the same memory.

Writes are guarded by a server-side script: a row whose event_time is older than the stored
one never overwrites it, so replays and out-of-order events cannot make features go back in
time. A batch of writes or reads is one round trip (a pipeline of chunked script calls by SHA,
or HMGETs). Redis errors become ``ServiceUnavailable`` at this boundary.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from rtml.errors import ServiceUnavailable
from rtml.settings import Settings

FRAUD_GROUP = "fraud"  # card features (consumers/pipelines/fraud_features.py)
RECSYS_GROUP = "recsys"  # user recommendation features (consumers/pipelines/recsys_features.py)
RECS_GROUP = "recs"  # the latest top-K per user (the same pipeline; served over HTTP)
PROFILE_GROUP = "profile"  # the user-profiles table (consumers/pipelines/profiles.py)

# KEYS: n row keys. ARGV: ttl_ms, written_at, the lengths (a msgpack array of 2n ints) and
# the concatenation of (event_time as a decimal string, payload) of each key in order. Two
# packed arguments instead of two per row: redis-py encodes every argument in Python (~0.3 us
# each); a join and one msgpack call cost a few ns per row. (Redis's Lua msgpack predates the
# bin type, so the payloads travel as one string, cut by their lengths.) Returns how many rows
# were written (the others were older than what is stored).
_GUARDED_WRITE = """
local ttl = tonumber(ARGV[1])
local written_at = ARGV[2]
local lengths = cmsgpack.unpack(ARGV[3])
local data = ARGV[4]
local total = 0
for _, n in ipairs(lengths) do total = total + n end
if #lengths ~= 2 * #KEYS or total ~= #data then
  return redis.error_reply('rtml online store: malformed write of ' .. #KEYS .. ' keys')
end
local pos = 1
local written = 0
for i, key in ipairs(KEYS) do
  local t = string.sub(data, pos, pos + lengths[2 * i - 1] - 1)
  pos = pos + lengths[2 * i - 1]
  local payload = string.sub(data, pos, pos + lengths[2 * i] - 1)
  pos = pos + lengths[2 * i]
  local stored = tonumber(redis.call('HGET', key, 't'))
  if stored == nil or stored <= tonumber(t) then
    redis.call('HSET', key, 'v', payload, 't', t, 'w', written_at)
    written = written + 1
  end
  redis.call('PEXPIRE', key, ttl)
end
return written
"""

# KEYS: n row keys. ARGV: event_time per key. Deletes only rows not newer than the tombstone.
_GUARDED_DELETE = """
local deleted = 0
for i, key in ipairs(KEYS) do
  local stored = tonumber(redis.call('HGET', key, 't'))
  if stored ~= nil and stored <= tonumber(ARGV[i]) then
    redis.call('DEL', key)
    deleted = deleted + 1
  end
end
return deleted
"""

CHUNK = 500  # keys per script call: keeps each call short so Redis stays responsive
_packer = msgspec.msgpack.Encoder()


@dataclass(frozen=True, slots=True)
class Row:
    """A stored row: the features as written, and their times (for freshness)."""

    payload: bytes
    event_time: int
    written_at: int


def connect_redis(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=5.0,
        socket_connect_timeout=5.0,
        health_check_interval=30,
        **settings.redis_client_kwargs(),
    )


class OnlineStore:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str = "rtml",
        ttl_ms: int = 26 * 3600 * 1000,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._ttl_ms = ttl_ms
        self._write = client.register_script(_GUARDED_WRITE)
        self._delete = client.register_script(_GUARDED_DELETE)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: object) -> OnlineStore:
        return cls(connect_redis(settings), **kwargs)  # type: ignore[arg-type]

    def key(self, group: str, entity: str) -> str:
        return f"{self._namespace}:{group}:{entity}"

    async def write(
        self, group: str, rows: Sequence[tuple[str, int, bytes]], *, guarded: bool = True
    ) -> int:
        """Write (entity, event_time, payload) rows; returns how many were written.

        Guarded (the default), a row older than the stored one is skipped. Unguarded, the last
        write wins: for tables whose truth is log order (the compacted profiles topic).
        """
        if not rows:
            return 0
        written_at = str(time.time_ns() // 1_000_000)
        if not guarded:
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for entity, event_time, payload in rows:
                        key = self.key(group, entity)
                        pipe.hset(key, mapping={"v": payload, "t": event_time, "w": written_at})
                        pipe.pexpire(key, self._ttl_ms)
                    await pipe.execute()
            except RedisError as exc:
                raise ServiceUnavailable("redis", f"online store write failed: {exc}") from exc
            return len(rows)
        calls: list[tuple[list[bytes], list[object]]] = []
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            keys = [self.key(group, entity).encode() for entity, _, _ in chunk]
            parts: list[bytes] = []
            lengths: list[int] = []
            for _, event_time, payload in chunk:
                t = b"%d" % event_time
                parts.append(t)
                parts.append(payload)
                lengths.append(len(t))
                lengths.append(len(payload))
            calls.append(
                (keys, [self._ttl_ms, written_at, _packer.encode(lengths), b"".join(parts)])
            )
        try:
            results = await self._run_script(self._write, calls)
        except RedisError as exc:
            raise ServiceUnavailable("redis", f"online store write failed: {exc}") from exc
        return int(sum(results))

    async def delete(self, group: str, rows: Sequence[tuple[str, int]]) -> int:
        """Delete (entity, as_of_event_time) rows unless a newer row is stored."""
        if not rows:
            return 0
        calls: list[tuple[list[bytes], list[object]]] = []
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            keys = [self.key(group, entity).encode() for entity, _ in chunk]
            calls.append((keys, [event_time for _, event_time in chunk]))
        try:
            results = await self._run_script(self._delete, calls)
        except RedisError as exc:
            raise ServiceUnavailable("redis", f"online store delete failed: {exc}") from exc
        return int(sum(results))

    async def _run_script(
        self, script: AsyncScript, calls: Sequence[tuple[list[bytes], list[object]]]
    ) -> list[Any]:
        """EVALSHA ``script`` once per (keys, args) call, in one pipelined round trip.

        redis-py's own way (a ``Script`` called on a pipeline) first asks ``SCRIPT EXISTS`` in
        a round trip of its own on every execute; here the script is loaded once, and again
        only when Redis answers NOSCRIPT (it restarted or its script cache was flushed): the
        calls are then repeated, which the scripts make harmless (guarded writes and deletes).
        """
        for attempt in range(2):
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for keys, args in calls:
                        pipe.evalsha(script.sha, len(keys), *keys, *args)
                    return list(await pipe.execute())
            except NoScriptError:
                if attempt:
                    raise
                script.sha = await self._client.script_load(script.script)
        raise AssertionError("unreachable")

    async def read(self, group: str, entities: Sequence[str]) -> list[Row | None]:
        """The stored rows of ``entities`` in order (None where absent), in one round trip."""
        return await self.read_keys([(group, entity) for entity in entities])

    async def read_keys(self, keys: Sequence[tuple[str, str]]) -> list[Row | None]:
        """The stored rows of ``(group, entity)`` pairs in order (None where absent), in one
        round trip."""
        if not keys:
            return []
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for group, entity in keys:
                    pipe.hmget(self.key(group, entity), "v", "t", "w")
                results = await pipe.execute()
        except RedisError as exc:
            raise ServiceUnavailable("redis", f"online store read failed: {exc}") from exc
        rows: list[Row | None] = []
        for payload, event_time, written_at in results:
            if payload is None:
                rows.append(None)
            else:
                rows.append(Row(payload, int(event_time), int(written_at)))
        return rows

    async def replace_counts(self, name: str, counts: dict[str, int]) -> None:
        """Atomically replace the sorted set ``{ns}:{name}`` (member -> count), e.g. popularity."""
        key = f"{self._namespace}:{name}"
        staging = f"{key}:staging"
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(staging)
                if counts:
                    pipe.zadd(staging, counts)
                    pipe.rename(staging, key)
                else:
                    pipe.delete(key)
                await pipe.execute()
        except RedisError as exc:
            raise ServiceUnavailable("redis", f"online store write failed: {exc}") from exc

    async def top_counts(self, name: str, n: int) -> list[tuple[str, int]]:
        """The ``n`` members of ``{ns}:{name}`` with the highest counts."""
        try:
            found = await self._client.zrevrange(
                f"{self._namespace}:{name}", 0, n - 1, withscores=True
            )
        except RedisError as exc:
            raise ServiceUnavailable("redis", f"online store read failed: {exc}") from exc
        return [(member.decode(), int(score)) for member, score in found]

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except RedisError as exc:
            raise ServiceUnavailable("redis", f"not reachable: {exc}") from exc

    async def close(self) -> None:
        await self._client.aclose()
