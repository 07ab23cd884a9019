"""The CLI is thin: bad arguments exit 2 with argparse's message, expected failures print one
line (no traceback) and exit non-zero."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtml.cli import build_parser, main


def test_every_command_is_registered() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"infra", "produce", "consume", "features", "status", "monitor", "demo"} <= set(commands)


@pytest.mark.parametrize(
    "argv",
    [
        ["nonsense"],
        ["status", "--interval", "-1"],
        ["status", "--interval", "soon"],
        ["monitor", "--metrics-port", "70000"],
        ["monitor", "--duration", "0"],
        ["consume", "--actors", "0"],
        ["demo", "--rate", "0"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_invalid_settings_print_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "no-port-here")
    assert main(["status", "--once"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("rtml: error: invalid settings: kafka_bootstrap_servers")


def test_missing_config_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # --config exports RTML_CONFIG for the whole process (Ray workers inherit it); let
    # monkeypatch restore the variable afterwards.
    monkeypatch.setenv("RTML_CONFIG", "")
    assert main(["--config", str(tmp_path / "absent.toml"), "status", "--once"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_bad_pattern_rules_file_stops_consume_before_ray(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - {name: x, within: soon, steps: [{name: a}]}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RTML_PATTERN_RULES", str(rules))
    assert main(["consume", "--pipelines", "fraud"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rtml: error: invalid pattern rules in {rules}:")
    assert "rules[0] (x).within: expected a duration" in err
