"""Topic planning and the `rtml infra` command's parsing and output (no services)."""

from __future__ import annotations

import argparse

import pytest

from infra import cli
from infra.stack import ServiceStatus, StackStatus
from infra.topics import TopicInfo, plan_topics
from rtml.errors import ConfigError
from rtml.settings import Topics, TopicSpec


def spec(name: str, partitions: int = 1, **config: str) -> TopicSpec:
    return TopicSpec(name=name, partitions=partitions, config=config)


def test_plan_creates_only_missing_topics() -> None:
    plan = plan_topics({"a": 3, "__consumer_offsets": 50}, [spec("a", 3), spec("b", 2)])
    assert [s.name for s in plan.to_create] == ["b"]
    assert plan.mismatches == ()


def test_plan_reports_partition_mismatches_without_changing_them() -> None:
    plan = plan_topics({"a": 2, "b": 16}, [spec("a", 8), spec("b", 8)])
    assert plan.to_create == ()
    assert len(plan.mismatches) == 2
    assert plan.mismatches[0].startswith("topic a has 2 partitions, but the settings say 8")
    assert "left as it is" in plan.mismatches[0]


def test_plan_rejects_duplicate_names() -> None:
    with pytest.raises(ConfigError, match="x repeat"):
        plan_topics({}, [spec("x"), spec("x", 2)])


def test_plan_of_the_default_topics_on_an_empty_cluster() -> None:
    topics = Topics().all()
    plan = plan_topics({}, topics)
    assert plan.to_create == tuple(topics)
    profiles = next(s for s in plan.to_create if s.name == "user-profiles")
    assert profiles.config == {"cleanup.policy": "compact"}


def test_topic_info_totals() -> None:
    info = TopicInfo("t", (3, 0, 7))
    assert info.partitions == 3
    assert info.total_end_offset == 10


def _status(running: bool = True, topics: tuple[TopicInfo, ...] = ()) -> StackStatus:
    return StackStatus(
        kafka=ServiceStatus("kafka", "127.0.0.1:9092", True, running, pid=11 if running else None),
        redis=ServiceStatus("redis", "redis://127.0.0.1:6379", True, running, pid=12),
        topics=topics,
    )


def test_format_status_names_every_topic_with_offsets() -> None:
    topics = (TopicInfo("dead-letter", (0,)), TopicInfo("transactions", (5, 6, 7)))
    lines = cli.format_status(_status(topics=topics))

    assert lines[0].startswith("kafka up    127.0.0.1:9092  pid 11  managed")
    assert lines[1].startswith("redis up    redis://127.0.0.1:6379  pid 12")
    assert lines[2] == "topics (2):"
    assert lines[3].split() == ["dead-letter", "1", "partition", "end", "offsets", "0", "[0]"]
    assert "3 partitions" in lines[4] and "end offsets 18 [5 6 7]" in lines[4]


def test_format_status_elides_many_partitions() -> None:
    line = cli.format_topic(TopicInfo("wide", tuple(range(40))))
    assert "end offsets 780" in line and "... (24 more)" in line


def test_format_status_when_down_lists_no_topics() -> None:
    down = StackStatus(
        kafka=ServiceStatus("kafka", "127.0.0.1:9092", True, False, detail="not running"),
        redis=ServiceStatus("redis", "redis://h:6379", False, False, detail="cannot reach it"),
    )
    lines = cli.format_status(down)
    assert lines == [
        "kafka down  127.0.0.1:9092  pid -  managed  (not running)",
        "redis down  redis://h:6379  pid -  external  (cannot reach it)",
    ]


def test_format_up_and_down() -> None:
    report = StackStatus(
        kafka=ServiceStatus("kafka", "127.0.0.1:9092", True, True, pid=11, started=True),
        redis=ServiceStatus("redis", "redis://h:6379", False, True),
        created_topics=("a", "b"),
        warnings=("topic c has 2 partitions, but the settings say 8; left as it is",),
    )
    lines = cli.format_up(report)
    assert lines[0].endswith("[started]") and lines[1].endswith("[reachable]")
    assert lines[2] == "topics: 2 created (a, b)"
    assert lines[3].startswith("warning: topic c has 2 partitions")

    stopped = StackStatus(
        kafka=ServiceStatus("kafka", "127.0.0.1:9092", True, False, pid=11),
        redis=ServiceStatus("redis", "redis://127.0.0.1:6379", True, False),
    )
    assert cli.format_down(stopped) == ["kafka stopped (pid 11)", "redis was not running"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtml")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.mark.parametrize(
    ("argv", "handler", "timeout"),
    [
        (["infra", "up"], cli.up_command, 60.0),
        (["infra", "up", "--timeout", "5"], cli.up_command, 5.0),
        (["infra", "down"], cli.down_command, 30.0),
        (["infra", "status"], cli.status_command, None),
    ],
)
def test_register_wires_the_handlers(argv: list[str], handler: object, timeout: float) -> None:
    args = _parser().parse_args(argv)
    assert args.run is handler
    assert getattr(args, "timeout", None) == timeout


@pytest.mark.parametrize("argv", [["infra"], ["infra", "up", "--timeout", "0"], ["infra", "x"]])
def test_register_rejects_bad_arguments(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        _parser().parse_args(argv)
    assert caught.value.code == 2
    capsys.readouterr()
