"""``rtml infra up|down|status``: the local Kafka broker and Redis of a developer's machine.

    rtml infra up [--timeout S]     start (or find) Kafka and Redis, create the topics
    rtml infra down [--timeout S]   stop what `up` started (external services are left alone)
    rtml infra status               pids, addresses, topics with end offsets; exit 3 if down

Set KAFKA_MANAGED=false / REDIS_MANAGED=false (or point the addresses at non-loopback hosts)
to use services that already run; `up` then only checks them and creates the topics.
RTML_CDC=true adds PostgreSQL and Kafka Connect with the users CDC connector (docs/database.md).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from infra import stack
from infra.stack import ServiceStatus, StackStatus
from infra.topics import TopicInfo
from rtml.settings import Settings

EXIT_DOWN = 3  # as LSB init scripts' "status": not running
MAX_PARTITIONS_SHOWN = 16


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "infra",
        help="run the local Kafka broker and Redis",
        description="Run the local Kafka broker and Redis (files under rtml_state_dir).",
        epilog=(
            "Set KAFKA_MANAGED=false / REDIS_MANAGED=false to use services that already run: "
            "`up` then only checks them and creates the topics."
        ),
    )
    commands = parser.add_subparsers(dest="infra_command", metavar="ACTION", required=True)

    up = commands.add_parser("up", help="start Kafka and Redis, create the topics")
    up.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=60.0,
        metavar="S",
        help="seconds to wait for the broker to answer (default: 60)",
    )
    up.set_defaults(run=up_command)

    down = commands.add_parser("down", help="stop the local Kafka and Redis")
    down.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=30.0,
        metavar="S",
        help="seconds to wait after SIGTERM before SIGKILL (default: 30)",
    )
    down.set_defaults(run=down_command)

    status = commands.add_parser("status", help="show pids, ports and topics")
    status.set_defaults(run=status_command)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def up_command(settings: Settings, args: argparse.Namespace, out: TextIO | None = None) -> int:
    report = stack.up(settings, timeout_s=args.timeout)
    _print(format_up(report), out)
    return 0


def down_command(settings: Settings, args: argparse.Namespace, out: TextIO | None = None) -> int:
    report = stack.down(settings, timeout_s=args.timeout)
    _print(format_down(report), out)
    return 0


def status_command(settings: Settings, args: argparse.Namespace, out: TextIO | None = None) -> int:
    report = stack.status(settings)
    _print(format_status(report), out)
    return 0 if report.running else EXIT_DOWN


def _print(lines: list[str], out: TextIO | None) -> None:
    stream = out or sys.stdout
    for line in lines:
        print(line, file=stream)


# --- formatting (pure) -------------------------------------------------------------------------


def _label(name: str) -> str:
    """The service's name padded to the column of "kafka " and "redis "."""
    return f"{name:<6}" if len(name) < 6 else f"{name} "


def format_service(service: ServiceStatus) -> str:
    state = "up" if service.running else "down"
    pid = f"pid {service.pid}" if service.pid is not None else "pid -"
    kind = "managed" if service.managed else "external"
    line = f"{_label(service.name)}{state:<5} {service.address}  {pid}  {kind}"
    return f"{line}  ({service.detail})" if service.detail else line


def format_up(report: StackStatus) -> list[str]:
    lines = []
    for service in report.services:
        verb = "started" if service.started else ("running" if service.managed else "reachable")
        lines.append(f"{format_service(service)}  [{verb}]")
    created = report.created_topics
    lines.append(
        f"topics: {len(created)} created" + (f" ({', '.join(created)})" if created else "")
    )
    lines += [f"warning: {warning}" for warning in report.warnings]
    return lines


def format_down(report: StackStatus) -> list[str]:
    lines = []
    for service in report.services:
        if not service.managed:
            lines.append(f"{_label(service.name)}left alone ({service.address} is external)")
        elif service.pid is not None:
            lines.append(f"{_label(service.name)}stopped (pid {service.pid})")
        else:
            lines.append(f"{_label(service.name)}was not running")
    return lines


def format_topic(topic: TopicInfo, width: int = 0) -> str:
    shown = topic.end_offsets[:MAX_PARTITIONS_SHOWN]
    per_partition = " ".join(str(offset) for offset in shown)
    if topic.partitions > MAX_PARTITIONS_SHOWN:
        per_partition += f" ... ({topic.partitions - MAX_PARTITIONS_SHOWN} more)"
    noun = "partition" if topic.partitions == 1 else "partitions"
    return (
        f"  {topic.name:<{width}}  {topic.partitions:>3} {noun:<10}  "
        f"end offsets {topic.total_end_offset} [{per_partition}]"
    )


def format_status(report: StackStatus) -> list[str]:
    lines = [format_service(service) for service in report.services]
    if report.kafka.running:
        width = max((len(topic.name) for topic in report.topics), default=0)
        lines.append(f"topics ({len(report.topics)}):")
        lines += [format_topic(topic, width) for topic in report.topics]
    lines += [f"warning: {warning}" for warning in report.warnings]
    return lines
