"""`rtml produce` arguments: each mistake gets a message that says what was wrong."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from producers import cli
from producers.config import GeneratorConfig
from producers.runner import EPOCH_MS, Window
from rtml.errors import ConfigError
from rtml.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtml")
    cli.register(parser.add_subparsers(dest="command"))
    return parser


def _parse(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(["produce", *argv])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate", "-5"], "argument --rate: must be a positive number, got -5"),
        (["--rate", "0"], "argument --rate: must be a positive number, got 0"),
        (["--rate", "fast"], "argument --rate: expected a number, got 'fast'"),
        (["--rate", "nan"], "argument --rate: expected a finite number"),
        (["--fraud-rate", "1.5"], "argument --fraud-rate: must be a fraction between 0 and 1"),
        (["--late-fraction", "-0.1"], "argument --late-fraction: must be a fraction between 0"),
        (["--malformed-fraction", "2"], "argument --malformed-fraction: must be a fraction"),
        (["--out-of-order-fraction", "x"], "argument --out-of-order-fraction: expected a number"),
        (["--count", "0"], "argument --count: must be a positive integer, got 0"),
        (["--count", "1.5"], "argument --count: expected a whole number, got '1.5'"),
        (["--seed", "-1"], "argument --seed: must be zero or a positive integer"),
        (["--users", "0"], "argument --users: must be a positive integer"),
        (["--start", "yesterday"], "argument --start: expected an ISO 8601 date"),
        (["--mix", "transactions=1,clicks=2"], "NAME in transactions, user-events, got 'clicks=2'"),
        (["--mix", "transactions=-1"], "weight of transactions must be zero or more"),
        (["--mix", "transactions=0,user-events=0"], "at least one weight must be positive"),
        (["--mix", "transactions"], "expected NAME=WEIGHT pairs"),
        (["--scenario-weights", "phishing=1"], "NAME in card_testing, account_takeover"),
    ],
)
def test_bad_values_are_refused_by_argparse(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse(*argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "live mode needs --duration SECONDS or --count N"),
        (["--rate", "100"], "live mode needs --duration SECONDS or --count N"),
        (["--duration", "5", "--count", "10"], "either --duration or --count, not both"),
        (["--count", "10", "--output-dir", "out"], "--output-dir needs a historical window"),
        (["--historical-days", "1", "--duration", "10"], "--duration is for live mode"),
        (
            ["--historical-days", "1", "--rate", "10", "--output-dir", "x"],
            "--rate paces a replay into Kafka",
        ),
        (["--historical-days", "1", "--start", "2024-01-01"], "either --historical-days or"),
        (["--start", "2024-01-01"], "--start and --end go together"),
        (["--start", "2024-01-02", "--end", "2024-01-01"], "must be after --start"),
        (["--historical-days", "1", "--output-dir", "o", "--labels-topic"], "--labels-topic is"),
        (["--count", "5", "--max-delay-ms", "7200000"], "max_delay_ms must be between 1 and"),
        (["--count", "5", "--merchants", "10"], "merchants must be at least"),
    ],
)
def test_inconsistent_arguments_raise_config_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan = cli.build_plan(_parse(*argv))
        # World-level checks run when the world is built.
        from producers.stream import EventGenerator

        EventGenerator(plan.config, start_ms=0)


def test_live_plan() -> None:
    plan = cli.build_plan(
        _parse("--rate", "2500", "--duration", "30", "--seed", "7", "--labels-topic")
    )
    assert plan.window is None and plan.rate == 2500 and plan.duration_s == 30
    assert plan.send_labels and plan.config.seed == 7


def test_live_rate_has_a_default() -> None:
    assert cli.build_plan(_parse("--count", "100")).rate == cli.DEFAULT_RATE


def test_historical_plans() -> None:
    plan = cli.build_plan(_parse("--historical-days", "7", "--output-dir", "out", "--count", "9"))
    assert plan.window == Window(EPOCH_MS - 7 * 86_400_000, EPOCH_MS)
    assert plan.output_dir == Path("out") and plan.count == 9 and plan.rate is None
    plan = cli.build_plan(_parse("--start", "2024-06-01", "--end", "2024-06-02T12:00+00:00"))
    assert plan.window == Window(1_717_200_000_000, 1_717_329_600_000)


def test_config_flags_reach_the_config_and_defaults_stay_in_one_place() -> None:
    plan = cli.build_plan(_parse("--count", "1", "--fraud-rate", "0.02", "--users", "123"))
    assert plan.config == GeneratorConfig(fraud_rate=0.02, users=123)


def test_mix_sets_the_share_of_transactions() -> None:
    config = cli.build_plan(_parse("--count", "1", "--mix", "transactions=1,user-events=3")).config
    txns = config.txns_per_user_day
    events = config.sessions_per_user_day * config.user_events_per_session
    assert txns / (txns + events) == pytest.approx(0.25)


def test_output_dir_writes_files(tmp_path: Path) -> None:
    args = _parse(
        "--historical-days", "0.5", "--users", "200", "--output-dir", str(tmp_path), "--quiet"
    )
    assert cli.handle(Settings(), args) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "labels.jsonl",
        "manifest.json",
        "transactions.jsonl",
        "user-events.jsonl",
        "user-profiles.jsonl",
    ]
