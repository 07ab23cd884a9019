"""`rtml produce`: the synthetic stream, live at a rate or a historical window as fast as possible.

    rtml produce --rate 2000 --duration 60                       live, to Kafka
    rtml produce --historical-days 7 --output-dir data/history   training data, to files
    rtml produce --historical-days 1                              a past day, to Kafka
    rtml produce --historical-days 4 --rate 10000                 a replay paced at 10k/s

Modules are imported in the handler so ``rtml --help`` stays fast.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from producers.config import GeneratorConfig  # light: no numpy
from rtml.arguments import (
    fraction,
    non_negative_float,
    non_negative_int,
    number,
    positive_float,
    positive_int,
)
from rtml.errors import ConfigError
from rtml.settings import Settings

if TYPE_CHECKING:
    from producers.runner import Window

DEFAULT_RATE = 1_000.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "produce",
        help="produce the synthetic stream (live at a rate, or a historical window)",
        description=(
            "Generate the deterministic synthetic stream: transactions (with labeled fraud), "
            "user events and user profiles. Live mode (the default) produces to Kafka at --rate "
            "records/s for --duration or --count; historical mode (--historical-days or "
            "--start/--end) produces a past window with its own (simulated) event times as fast as "
            "possible, or paced at --rate, to Kafka or, with --output-dir, to JSON-lines files. "
            "See docs/generator.md."
        ),
    )
    defaults = GeneratorConfig()
    for group_name, flags in _CONFIG_FLAGS:
        group = parser.add_argument_group(group_name)
        for name, kind, text in flags:
            default = getattr(defaults, name)
            if isinstance(default, dict):
                default = ",".join(f"{k}={v}" for k, v in default.items())
            group.add_argument(
                f"--{name.replace('_', '-')}", type=kind, help=f"{text} (default {default})"
            )
        if group_name == "world":
            group.add_argument(
                "--mix",
                type=_weights("transactions", "user-events"),
                help="share of transactions vs user events, e.g. "
                "transactions=0.5,user-events=0.5 (default: the per-user rates below decide)",
            )
        if group_name == "fraud":
            group.add_argument(
                "--labels-topic",
                action="store_true",
                help="also send each fraud label to the fraud-labels topic (Kafka modes), as an "
                "analyst's decision decided at the transaction's time",
            )
    live = parser.add_argument_group("live mode")
    live.add_argument(
        "--rate",
        type=positive_float,
        help=(
            f"records per second, all streams together (live default {DEFAULT_RATE:.0f}; "
            "a historical window goes as fast as possible unless given)"
        ),
    )
    live.add_argument(
        "--duration",
        type=positive_float,
        metavar="SECONDS",
        help="stop after rate x SECONDS records",
    )
    live.add_argument("--count", type=positive_int, metavar="N", help="stop after N records")
    history = parser.add_argument_group("historical mode")
    history.add_argument(
        "--historical-days",
        type=positive_float,
        metavar="N",
        help="the N days before 2025-01-01T00:00Z",
    )
    history.add_argument("--start", type=_datetime, help="window start, ISO 8601 (UTC if naive)")
    history.add_argument("--end", type=_datetime, help="window end, ISO 8601")
    history.add_argument(
        "--output-dir", type=Path, help="write JSON-lines files here instead of to Kafka"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress line per second, only the summary"
    )
    parser.set_defaults(run=handle)


@dataclass(frozen=True)
class Plan:
    """A validated produce command."""

    config: GeneratorConfig
    window: Window | None = None  # None: live mode
    rate: float | None = None
    duration_s: float | None = None
    count: int | None = None
    output_dir: Path | None = None
    send_labels: bool = False


def build_plan(args: argparse.Namespace) -> Plan:
    """Check the arguments together; raises ``ConfigError`` saying what is wrong."""
    from producers.runner import Window

    overrides = {name: getattr(args, name) for _, flags in _CONFIG_FLAGS for name, _, _ in flags}
    config = GeneratorConfig(**{k: v for k, v in overrides.items() if v is not None})
    if args.mix is not None:
        config = config.with_mix(args.mix)

    if args.start is not None or args.end is not None:
        if args.historical_days is not None:
            raise ConfigError("give either --historical-days or --start/--end, not both")
        if args.start is None or args.end is None:
            raise ConfigError("--start and --end go together")
        window = Window.between(args.start, args.end)
    elif args.historical_days is not None:
        window = Window.last_days(args.historical_days)
    else:
        window = None

    if window is None:
        if args.output_dir is not None:
            raise ConfigError(
                "--output-dir needs a historical window (--historical-days or --start/--end)"
            )
        if args.duration is None and args.count is None:
            raise ConfigError(
                "live mode needs --duration SECONDS or --count N "
                "(or --historical-days N for a historical window)"
            )
        if args.duration is not None and args.count is not None:
            raise ConfigError("give either --duration or --count, not both")
        return Plan(
            config,
            rate=args.rate or DEFAULT_RATE,
            duration_s=args.duration,
            count=args.count,
            send_labels=args.labels_topic,
        )
    if args.duration is not None:
        raise ConfigError(
            "--duration is for live mode; a historical window ends with the window "
            "(use --count to cap it)"
        )
    if args.output_dir is not None and args.labels_topic:
        raise ConfigError("--labels-topic is for Kafka; --output-dir always writes labels.jsonl")
    if args.output_dir is not None and args.rate is not None:
        raise ConfigError("--rate paces a replay into Kafka; files are written as fast as possible")
    return Plan(
        config,
        window=window,
        rate=args.rate,
        count=args.count,
        output_dir=args.output_dir,
        send_labels=args.labels_topic,
    )


def handle(settings: Settings, args: argparse.Namespace) -> int:
    from rtml.cli import run_async

    plan = build_plan(args)
    # Oversize defects are built against the limit the consumers enforce.
    config = replace(plan.config, max_record_bytes=settings.rtml_max_record_bytes)
    report = None if args.quiet else _print_line
    if plan.output_dir is not None:
        from producers.runner import write_history

        summary = write_history(config, plan.output_dir, plan.window, count=plan.count)
    elif plan.window is not None:
        from producers.runner import produce_history

        summary = run_async(
            produce_history(
                settings,
                config,
                plan.window,
                count=plan.count,
                rate=plan.rate,
                send_labels=plan.send_labels,
                report=report,
            )
        )
    else:
        from producers.runner import produce_live

        assert plan.rate is not None
        summary = run_async(
            produce_live(
                settings,
                config,
                rate=plan.rate,
                duration_s=plan.duration_s,
                count=plan.count,
                send_labels=plan.send_labels,
                report=report,
            )
        )
    print(summary.describe(), flush=True)
    return 0 if summary.failed == 0 else 1


def _print_line(line: str) -> None:
    print(line, flush=True)


# Argument types: each says what it got and what it expected.


def _datetime(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 date or time like 2024-06-01 or 2024-06-01T12:00Z, got {text!r}"
        ) from None


def _weights(*names: str) -> Any:
    """``name=weight,...`` over ``names``: weights at least 0, at least one positive."""

    def parse(text: str) -> dict[str, float]:
        weights: dict[str, float] = {}
        for part in text.split(","):
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or name not in names:
                raise argparse.ArgumentTypeError(
                    f"expected NAME=WEIGHT pairs with NAME in {', '.join(names)}, got {part!r}"
                )
            if name in weights:
                raise argparse.ArgumentTypeError(f"{name} is given twice")
            weight = number(value.strip())
            if weight < 0:
                raise argparse.ArgumentTypeError(
                    f"weight of {name} must be zero or more, got {value}"
                )
            weights[name] = weight
        if not any(w > 0 for w in weights.values()):
            raise argparse.ArgumentTypeError("at least one weight must be positive")
        return weights

    return parse


# The flags that set GeneratorConfig fields one to one, by help group: (field, type, help).
# Their defaults are GeneratorConfig's; None (not given) keeps them.
_CONFIG_FLAGS: tuple[tuple[str, tuple[tuple[str, Any, str], ...]], ...] = (
    (
        "world",
        (
            ("seed", non_negative_int, "random seed"),
            ("users", positive_int, "users (each with one or two cards)"),
            ("merchants", positive_int, "merchants"),
            ("items", positive_int, "catalog items"),
            ("txns_per_user_day", non_negative_float, "legit transactions per user per day"),
            ("sessions_per_user_day", non_negative_float, "browsing sessions per user per day"),
        ),
    ),
    (
        "fraud",
        (
            ("fraud_rate", fraction, "share of transactions that are fraud"),
            (
                "scenario_weights",
                _weights("card_testing", "account_takeover", "merchant_spree"),
                "how scenario instances split",
            ),
        ),
    ),
    (
        "profiles",
        (
            ("profile_update_rate", non_negative_float, "updates per user per day"),
            ("profile_delete_rate", non_negative_float, "deletions per user per day"),
        ),
    ),
    (
        "defects (fractions of all records)",
        (
            ("out_of_order_fraction", fraction, "records delayed up to --max-delay-ms"),
            ("max_delay_ms", positive_int, "out-of-order delay bound"),
            ("late_fraction", fraction, "records delayed beyond --allowed-lateness-ms"),
            ("allowed_lateness_ms", positive_int, "the consumers' allowed lateness"),
            ("malformed_fraction", fraction, "values broken to fail their contract"),
        ),
    ),
)
