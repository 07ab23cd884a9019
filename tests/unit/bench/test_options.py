"""Options and the command line: sizes per mode, overrides, validation, the repeat command."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from bench.cli import canonical_command, options_from_args, register
from bench.options import QUICK, BenchOptions, parse_actors, parse_loads, parse_only, sizes_for
from bench.scenarios import SCENARIOS
from rtml.errors import ConfigError


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="rtml")
    register(root.add_subparsers(dest="command", required=True))
    return root


def parse(*argv: str) -> BenchOptions:
    return options_from_args(parser().parse_args(["bench", *argv]))


def test_quick_and_full_defaults() -> None:
    quick = parse("--quick")
    assert quick.mode == "quick" and quick.sizes == QUICK
    assert quick.scenarios == tuple(SCENARIOS)
    assert quick.out == Path("docs/benchmarks")
    assert quick.stem(list(SCENARIOS)) == "quick"
    full = parse()
    assert full.mode == "full" and full.sizes == sizes_for("full")
    assert full.sizes.memory_seconds == 600 and full.sizes.memory_cards == 1_000_000


def test_overrides_and_selection_make_a_custom_run() -> None:
    options = parse("--quick", "--only", "features, ceiling", "--repeats", "2", "--actors", "2,1")
    assert options.scenarios == ("ceiling", "features")  # registry order
    assert options.sizes == replace(QUICK, repeats=2)
    assert options.stem(list(SCENARIOS)) == "quick-custom"
    assert parse("--quick", "--name", "laptop").stem(list(SCENARIOS)) == "laptop"


def test_the_recorded_command_repeats_the_run() -> None:
    options = parse("--quick", "--only", "features", "--transactions", "5000", "--seed", "3")
    argv = shlex.split(canonical_command(options))
    assert argv[:2] == ["rtml", "bench"]
    assert parse(*argv[2:]) == options


@pytest.mark.parametrize(
    "argv",
    [
        ["--repeats", "0"],
        ["--repeats", "many"],
        ["--transactions", "-5"],
        ["--memory-rate", "0"],
        ["--profile-records", "-1"],
        ["--load-warmup-seconds", "-1"],
        ["--seed", "x"],
    ],
)
def test_bad_values_are_argument_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parser().parse_args(["bench", *argv])
    assert info.value.code == 2
    assert "error: argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--only", "nonsense"], "--only: unknown scenario 'nonsense'; expected some of"),
        (["--only", ","], "--only needs at least one scenario"),
        (["--actors", "1,9"], "--actors must be between 1 and the 8 partitions, got 1,9"),
        (["--actors", "one"], "--actors expects comma-separated whole numbers"),
        (["--transactions", "10"], "--transactions must be a whole number >= 1000, got 10"),
        (["--memory-seconds", "1"], "--memory-seconds must be at least 5, got 1"),
        (["--load-warmup-seconds", "601"], "--load-warmup-seconds must be between 0 and 600"),
        (["--redis-port", "39092"], "the ports must differ"),
        (["--kafka-port", "80"], "--kafka-port must be between 1024 and 65535, got 80"),
        (["--name", "../x"], "--name must be letters, digits"),
    ],
)
def test_bad_combinations_say_what_was_expected(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse("--quick", *argv)
    assert message in str(info.value)


def test_parse_helpers() -> None:
    assert parse_only(None, ["a", "b"]) == ("a", "b")
    assert parse_only("b,a,b", ["a", "b"]) == ("a", "b")
    assert parse_actors("2, 1,2") == (1, 2)
    with pytest.raises(ConfigError, match="at least one count"):
        parse_actors(" , ")
    assert parse_loads("2000, 1000,2000") == (1000.0, 2000.0)
    with pytest.raises(ConfigError, match="comma-separated numbers"):
        parse_loads("1k")
    with pytest.raises(ConfigError, match="between 1 and"):
        parse_loads("0,100")


def test_options_serialize_to_plain_json_types() -> None:
    data = parse("--quick", "--state-dir", "/tmp/x").to_dict()
    assert data["out"] == "docs/benchmarks"
    assert data["state_dir"] == "/tmp/x"
    assert data["sizes"]["actors"] == [1, 2]
    assert data["scenarios"] == list(SCENARIOS)
