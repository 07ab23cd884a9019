"""`rtml serve`: argument parsing and config assembly, without starting Ray."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from models.errors import ArtifactError
from rtml.errors import ConfigError
from rtml.settings import Settings, load_settings
from serving import cli
from serving.config import render
from serving.errors import ServingConfigError


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="rtml")
    cli.register(root.add_subparsers(dest="command", required=True))
    return root


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(rtml_state_dir=tmp_path / "state", rtml_serve_app="fraud-app")


def test_subcommands_dispatch_to_their_handlers() -> None:
    assert parser().parse_args(["serve"]).run is cli.serve_command
    assert parser().parse_args(["serve", "--port", "9000"]).port == 9000
    assert parser().parse_args(["serve", "config"]).run is cli.config_command
    reload = parser().parse_args(["serve", "reload", "--fraud-model", "fraud-v2"])
    assert reload.run is cli.reload_command and reload.fraud_model == "fraud-v2"


@pytest.mark.parametrize("argv", [["serve", "--port", "0"], ["serve", "--port", "http"]])
def test_bad_ports_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parser().parse_args(argv)
    assert info.value.code == 2
    assert "--port" in capsys.readouterr().err


def test_config_takes_the_command_lines_overrides(settings: Settings, tmp_path: Path) -> None:
    args = parser().parse_args(
        [
            "serve",
            "--port",
            "9001",
            "--models-dir",
            str(tmp_path / "m"),
            "--fraud-model",
            "fraud-v3",
            "--device",
            "cpu",
        ]
    )
    config = cli.build_config(settings, args)
    (app,) = config["applications"]
    assert app["name"] == "fraud-app"  # the app the consumers look up
    assert config["http_options"] == {"host": "127.0.0.1", "port": 9001, "request_timeout_s": 30.0}
    assert app["args"]["models_dir"] == str((tmp_path / "m").resolve())
    assert app["args"]["fraud"]["model"] == "fraud-v3"
    assert app["args"]["fraud"]["max_batch_rows"] == 4096  # the rest of the section is kept
    assert app["args"]["device"] == "cpu"


def test_a_config_file_is_read_and_checked(settings: Settings, tmp_path: Path) -> None:
    good = tmp_path / "serve.yaml"
    good.write_text(render())
    config = cli.build_config(settings, parser().parse_args(["serve", "--config-file", str(good)]))
    assert config["applications"][0]["import_path"] == "serving.app:build_app"
    bad_args = yaml.safe_load(render())
    bad_args["applications"][0]["args"]["http"] = {"max_k": 0}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(bad_args))
    with pytest.raises(ServingConfigError, match=r"http\.max_k"):
        cli.build_config(settings, parser().parse_args(["serve", "--config-file", str(bad)]))
    (tmp_path / "empty.yaml").write_text("proxy_location: HeadOnly\n")
    with pytest.raises(ConfigError, match="not a Serve config"):
        cli.build_config(
            settings, parser().parse_args(["serve", "--config-file", str(tmp_path / "empty.yaml")])
        )


def test_serve_without_models_fails_before_starting_ray(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rtml.ray_runtime

    def must_not_start(*args: object, **kwargs: object) -> None:
        raise AssertionError("Ray was started before the models were checked")

    monkeypatch.setattr(rtml.ray_runtime, "init_ray", must_not_start)
    with pytest.raises(ArtifactError, match="train one with `rtml train fraud`"):
        cli.serve_command(settings, parser().parse_args(["serve"]))


def test_config_command_prints_the_generated_config(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.config_command(settings, parser().parse_args(["serve", "config"])) == 0
    assert capsys.readouterr().out == render()
    out = tmp_path / "serve_config.yaml"
    cli.config_command(settings, parser().parse_args(["serve", "config", "-o", str(out)]))
    assert out.read_text() == render()


def test_reload_needs_a_model(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="name a model"):
        cli.reload_command(settings, parser().parse_args(["serve", "reload"]))
