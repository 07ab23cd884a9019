"""The database schema, applied idempotently by ``rtml infra up`` (and by tests).

``users`` mirrors ``contracts.events.UserProfile`` column for column, so the Debezium connector
streams a row into the contract's JSON shape with no mapping code: the column names are the
field names and ``updated_at`` is epoch milliseconds, set by a trigger on every change that
does not set it. The CHECK constraints are the contract's bounds: a row Postgres accepts is a
profile the pipelines accept.

``cases`` holds one row per fraud alert (``event_id`` is the primary key: written exactly once
per alert, see ``cases/intake.py``); ``status`` moves from ``open`` to an analyst's decision,
once. ``case_intake_offsets`` is where the alert intake is in fraud-alerts, committed with the
cases. ``label_outbox`` holds each decision's fraud label until it is on the fraud-labels topic
(the transactional outbox of ``cases/labels.py``).
"""

from __future__ import annotations

from typing import Final

from database.connection import Connection

USERS_TABLE: Final = "users"
CASES_TABLE: Final = "cases"
OUTBOX_TABLE: Final = "label_outbox"
CASE_STATUSES: Final = ("open", "confirmed_fraud", "legitimate")

_NOW_MS = "(extract(epoch from clock_timestamp()) * 1000)::bigint"

STATEMENTS: Final[tuple[str, ...]] = (
    f"""
    CREATE TABLE IF NOT EXISTS {USERS_TABLE} (
        user_id text PRIMARY KEY CHECK (length(user_id) BETWEEN 1 AND 128),
        home_lat double precision NOT NULL CHECK (home_lat BETWEEN -90 AND 90),
        home_lon double precision NOT NULL CHECK (home_lon BETWEEN -180 AND 180),
        account_age_days integer NOT NULL CHECK (account_age_days BETWEEN 0 AND 100000),
        segment text NOT NULL CHECK (length(segment) BETWEEN 1 AND 64),
        updated_at bigint NOT NULL DEFAULT {_NOW_MS}
    )
    """,
    f"""
    CREATE OR REPLACE FUNCTION rtml_touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
            NEW.updated_at := {_NOW_MS};
        END IF;
        RETURN NEW;
    END
    $$
    """,
    f"""
    CREATE OR REPLACE TRIGGER users_touch_updated_at BEFORE UPDATE ON {USERS_TABLE}
    FOR EACH ROW EXECUTE FUNCTION rtml_touch_updated_at()
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {CASES_TABLE} (
        event_id text PRIMARY KEY,
        card_id text NOT NULL,
        merchant_id text,
        score double precision NOT NULL,
        model_version text NOT NULL,
        event_time bigint NOT NULL,
        alert jsonb NOT NULL,
        transaction jsonb,
        status text NOT NULL DEFAULT 'open'
            CHECK (status IN ({", ".join(f"'{s}'" for s in CASE_STATUSES)})),
        analyst text,
        notes text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL DEFAULT now(),
        decided_at timestamptz,
        source_topic text NOT NULL,
        source_partition integer NOT NULL,
        source_offset bigint NOT NULL,
        CHECK ((status = 'open') = (decided_at IS NULL))
    )
    """,
    f"CREATE INDEX IF NOT EXISTS cases_open ON {CASES_TABLE} (created_at) WHERE status = 'open'",
    # Where the alert intake is: the committed offsets live with the cases (cases/intake.py).
    """
    CREATE TABLE IF NOT EXISTS case_intake_offsets (
        topic text NOT NULL,
        partition integer NOT NULL,
        next_offset bigint NOT NULL,
        PRIMARY KEY (topic, partition)
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {OUTBOX_TABLE} (
        id bigserial PRIMARY KEY,
        event_id text NOT NULL UNIQUE REFERENCES {CASES_TABLE} (event_id),
        message_key text NOT NULL,
        payload bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        published_at timestamptz
    )
    """,
    f"CREATE INDEX IF NOT EXISTS label_outbox_pending ON {OUTBOX_TABLE} (id) "
    "WHERE published_at IS NULL",
)


async def apply_schema(connection: Connection) -> None:
    """Create what is missing; safe to run on every start, concurrently too (one transaction
    under an advisory lock)."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext('rtml-schema'))")
        for statement in STATEMENTS:
            await connection.execute(statement)
