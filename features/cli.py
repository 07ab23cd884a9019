"""``rtml features replay``: compute features over a generated event log (offline, for training).

    rtml features replay --input DIR --output FILE [--kind fraud|recommendations]

Reads the generator's stream files in DIR (``transactions.jsonl`` and ``user-profiles.jsonl``,
or ``user-events.jsonl``), replays them through the feature engines partition by partition, and
writes one JSON line per processed event: ``{"event_id", "key", "event_time", "partition",
"features"}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from features.patterns import load_rules
from features.replay import ReplayStats, replay_directory, write_records
from rtml.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "features",
        help="compute streaming features offline",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    commands = parser.add_subparsers(dest="features_command", metavar="ACTION", required=True)
    replay = commands.add_parser("replay", help="replay an event log into feature rows")
    replay.add_argument("--input", type=Path, required=True, metavar="DIR", help="stream files")
    replay.add_argument("--output", type=Path, required=True, metavar="FILE", help="JSON lines")
    replay.add_argument(
        "--kind",
        choices=("fraud", "recommendations"),
        default="fraud",
        help="which features (default: fraud)",
    )
    replay.add_argument(
        "--partitions",
        type=_positive_int,
        default=None,
        metavar="N",
        help="partition count to replay with (default: the topic's configured partitions)",
    )
    replay.set_defaults(run=replay_command)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def replay_command(settings: Settings, args: argparse.Namespace, out: TextIO | None = None) -> int:
    topics = settings.rtml_topics
    topic = topics.transactions if args.kind == "fraud" else topics.user_events
    partitions = args.partitions or topic.partitions
    stats = ReplayStats()
    records = replay_directory(
        args.input,
        args.kind,
        partitions=partitions,
        transactions_file=f"{topics.transactions.name}.jsonl",
        user_events_file=f"{topics.user_events.name}.jsonl",
        user_profiles_file=f"{topics.user_profiles.name}.jsonl",
        config=settings.rtml_features,
        stats=stats,
        rules=load_rules(settings.rtml_pattern_rules) if args.kind == "fraud" else None,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    count = write_records(records, args.output)
    print(
        f"wrote {count} {args.kind} feature rows to {args.output} "
        f"({partitions} partitions; {stats.late} late, {stats.invalid} invalid skipped)",
        file=out,
    )
    return 0
