"""The cases table: alerts in, analysts' decisions out, each in one database transaction.

``add_alerts`` writes a batch of alerts and the intake's next offsets together, so the offsets
never run ahead of the cases (nothing skipped) nor behind them for long (a repeated alert hits
the primary key and is ignored: nothing doubled). ``decide`` closes an open case and queues its
fraud label in the outbox in the same transaction, so every decision has exactly one label and
no label exists without a decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from cases.errors import CaseNotFound, CaseNotOpen
from contracts.codec import encode
from contracts.events import FraudAlert, FraudLabel
from database.connection import Pool
from database.schema import CASES_TABLE, OUTBOX_TABLE

Decision = Literal["confirmed_fraud", "legitimate"]
DECISIONS: tuple[Decision, ...] = ("confirmed_fraud", "legitimate")
_LABELS: dict[Decision, Literal["fraud", "legitimate"]] = {
    "confirmed_fraud": "fraud",
    "legitimate": "legitimate",
}


@dataclass(frozen=True)
class IncomingAlert:
    """A decoded alert and where it came from."""

    alert: FraudAlert
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Case:
    event_id: str
    card_id: str
    merchant_id: str | None
    score: float
    model_version: str
    event_time: int
    alert: dict[str, Any]  # the FraudAlert as on the topic (features, reasons, transaction)
    status: str
    analyst: str | None
    notes: str
    created_at: datetime
    decided_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "card_id": self.card_id,
            "merchant_id": self.merchant_id,
            "score": self.score,
            "model_version": self.model_version,
            "event_time": self.event_time,
            "status": self.status,
            "analyst": self.analyst,
            "notes": self.notes,
            "created_at": self.created_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "transaction": self.alert.get("transaction"),
            "features": self.alert.get("features", {}),
            "reasons": self.alert.get("reasons", []),
        }


_COLUMNS = (
    "event_id, card_id, merchant_id, score, model_version, event_time, alert, status, analyst, "
    "notes, created_at, decided_at"
)


def _case(row: Any) -> Case:
    return Case(
        event_id=row["event_id"],
        card_id=row["card_id"],
        merchant_id=row["merchant_id"],
        score=row["score"],
        model_version=row["model_version"],
        event_time=row["event_time"],
        alert=json.loads(row["alert"]),
        status=row["status"],
        analyst=row["analyst"],
        notes=row["notes"],
        created_at=row["created_at"],
        decided_at=row["decided_at"],
    )


class CaseStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def intake_offsets(self, topic: str) -> dict[int, int]:
        """The next offset to read per partition of ``topic`` (absent: from the beginning)."""
        rows = await self._pool.fetch(
            "SELECT partition, next_offset FROM case_intake_offsets WHERE topic = $1", topic
        )
        return {row["partition"]: row["next_offset"] for row in rows}

    async def add_alerts(
        self, alerts: list[IncomingAlert], next_offsets: dict[tuple[str, int], int]
    ) -> int:
        """Open a case per new alert and store the intake's next offsets, atomically.

        Returns how many cases were new (an alert already seen is skipped). One statement for
        the whole batch.
        """
        columns: list[list[object]] = [[] for _ in range(10)]
        for item in alerts:
            alert = item.alert
            values = (
                alert.event_id,
                alert.card_id,
                alert.transaction.merchant_id if alert.transaction else None,
                alert.score,
                alert.model_version,
                alert.event_time,
                encode(alert).decode("utf-8"),
                item.topic,
                item.partition,
                item.offset,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        async with self._pool.acquire() as connection, connection.transaction():
            inserted = await connection.fetch(
                f"""
                INSERT INTO {CASES_TABLE} (event_id, card_id, merchant_id, score, model_version,
                    event_time, alert, source_topic, source_partition, source_offset)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[],
                    $5::text[], $6::bigint[], $7::jsonb[], $8::text[], $9::int[], $10::bigint[])
                ON CONFLICT (event_id) DO NOTHING
                RETURNING event_id
                """,
                *columns,
            )
            await connection.executemany(
                """
                INSERT INTO case_intake_offsets (topic, partition, next_offset)
                VALUES ($1, $2, $3)
                ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
                """,
                [(topic, partition, offset) for (topic, partition), offset in next_offsets.items()],
            )
        return len(inserted)

    async def open_cases(self, limit: int = 100) -> list[Case]:
        """The oldest open cases first (first come, first reviewed)."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM {CASES_TABLE} WHERE status = 'open' "
            "ORDER BY created_at, event_id LIMIT $1",
            limit,
        )
        return [_case(row) for row in rows]

    async def get(self, event_id: str) -> Case:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM {CASES_TABLE} WHERE event_id = $1", event_id
        )
        if row is None:
            raise CaseNotFound(event_id)
        return _case(row)

    async def decide(
        self, event_id: str, decision: Decision, *, analyst: str, notes: str = ""
    ) -> tuple[Case, FraudLabel | None]:
        """Close an open case; queue its label (None when the alert named no transaction, so no
        merchant: the decision is kept, but there is nothing to learn from)."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                f"""
                UPDATE {CASES_TABLE} SET status = $2, analyst = $3, notes = $4,
                    decided_at = now()
                WHERE event_id = $1 AND status = 'open'
                RETURNING {_COLUMNS}
                """,
                event_id,
                decision,
                analyst,
                notes,
            )
            if row is None:
                existing = await connection.fetchval(
                    f"SELECT status FROM {CASES_TABLE} WHERE event_id = $1", event_id
                )
                if existing is None:
                    raise CaseNotFound(event_id)
                raise CaseNotOpen(event_id, existing)
            case = _case(row)
            if case.merchant_id is None:
                return case, None
            assert case.decided_at is not None
            label = FraudLabel(
                event_id=case.event_id,
                card_id=case.card_id,
                merchant_id=case.merchant_id,
                label=_LABELS[decision],
                event_time=case.event_time,
                decided_at=int(case.decided_at.timestamp() * 1000),
            )
            await connection.execute(
                f"INSERT INTO {OUTBOX_TABLE} (event_id, message_key, payload) VALUES ($1, $2, $3)",
                case.event_id,
                case.merchant_id,
                encode(label),
            )
        return case, label

    async def pending_labels(self, limit: int = 500) -> list[tuple[int, str, bytes]]:
        """Outbox rows not yet on the topic, oldest first: ``(id, key, payload)``."""
        rows = await self._pool.fetch(
            f"SELECT id, message_key, payload FROM {OUTBOX_TABLE} "
            "WHERE published_at IS NULL ORDER BY id LIMIT $1",
            limit,
        )
        return [(row["id"], row["message_key"], bytes(row["payload"])) for row in rows]

    async def mark_published(self, ids: list[int]) -> None:
        await self._pool.execute(
            f"UPDATE {OUTBOX_TABLE} SET published_at = now() WHERE id = ANY($1::bigint[])", ids
        )
