"""`rtml serve`: deploy the Serve app and run until Ctrl-C.

Also ``rtml serve config [-o FILE]`` (the generated Serve config, what serve_config.yaml holds)
and ``rtml serve reload --fraud-model VERSION`` (hot-reload a model of the running app).
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

import yaml

from rtml.errors import ConfigError
from rtml.settings import Settings
from serving.config import (
    FRAUD_SCORER,
    RECOMMENDER,
    parse_args,
    render,
    serve_config,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the Ray Serve app (fraud scores, recommendations, HTTP API)",
        description=(
            "Deploy the rtml Serve application (FraudScorer, Recommender, HTTP ingress) on Ray "
            "(RAY_ADDRESS, or a local Ray with the dashboard) from serve_config.yaml or the "
            "built-in defaults, print its URL and run until Ctrl-C."
        ),
    )
    parser.add_argument(
        "--config-file",
        metavar="FILE",
        help="Serve config to deploy (default: the built-in one, as in serve_config.yaml)",
    )
    parser.add_argument("--host", help="HTTP host (default: the config's, 127.0.0.1)")
    parser.add_argument("--port", type=_port, help="HTTP port (default: the config's, 8000)")
    parser.add_argument("--models-dir", metavar="DIR", help="default <rtml_state_dir>/models")
    parser.add_argument("--fraud-model", metavar="VERSION", help="version, path or 'latest'")
    parser.add_argument("--recommender-model", metavar="VERSION", help="version, path or 'latest'")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: auto")
    parser.add_argument(
        "--detach",
        action="store_true",
        help="return once deployed and leave the app running (with RAY_ADDRESS)",
    )
    parser.set_defaults(run=serve_command)
    actions = parser.add_subparsers(dest="serve_action", metavar="ACTION")
    config = actions.add_parser(
        "config",
        help="print the generated Serve config (what serve_config.yaml holds)",
        description="Print (or write) the Serve config generated from serving/config.py.",
    )
    config.add_argument("-o", "--output", metavar="FILE", help="write it here instead")
    config.set_defaults(run=config_command)
    reload = actions.add_parser(
        "reload",
        help="hot-reload the models of the running app",
        description=(
            "Point the running app's FraudScorer and/or Recommender at another model version; "
            "replicas load it while serving and swap without dropping requests."
        ),
    )
    reload.add_argument("--fraud-model", metavar="VERSION", help="version, path or 'latest'")
    reload.add_argument("--recommender-model", metavar="VERSION", help="version, path or 'latest'")
    reload.add_argument("--timeout", type=float, default=180.0, help="seconds (default 180)")
    reload.set_defaults(run=reload_command)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"must be in 1..65535, got {port}")
    return port


def load_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not data.get("applications"):
        raise ConfigError(f"{path} is not a Serve config (no applications)")
    return data


def build_config(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """The config to deploy: the file (or the defaults) with the command line's overrides,
    named ``settings.rtml_serve_app`` (the app the consumers call)."""
    config = load_config_file(Path(args.config_file)) if args.config_file else serve_config()
    apps = config["applications"]
    if len(apps) != 1:
        raise ConfigError(f"expected one application in the config, found {len(apps)}")
    app = apps[0]
    app["name"] = settings.rtml_serve_app
    http = config.setdefault("http_options", {})
    if args.host:
        http["host"] = args.host
    if args.port:
        http["port"] = args.port
    app_args = dict(app.get("args") or {})
    if args.models_dir:
        app_args["models_dir"] = str(Path(args.models_dir).expanduser().resolve())
    if args.device:
        app_args["device"] = args.device
    for key, value in (("fraud", args.fraud_model), ("recommender", args.recommender_model)):
        if value:
            app_args[key] = {**(app_args.get(key) or {}), "model": value}
    parse_args(app_args)  # fail here, before Ray starts, on a bad argument
    app["args"] = app_args
    return config


def _check_models(settings: Settings, app_args: dict[str, Any]) -> list[str]:
    """The artifacts the app will load (raises ``ArtifactError`` when one is missing)."""
    from serving.models import resolve_artifact
    from serving.replica import models_dir_of

    parsed = parse_args(app_args)
    models_dir = models_dir_of(parsed, settings)
    return [
        resolve_artifact(models_dir, "fraud", parsed.fraud.model).name,
        resolve_artifact(models_dir, "recsys", parsed.recommender.model).name,
    ]


def serve_command(settings: Settings, args: argparse.Namespace) -> int:
    from ray import serve

    from rtml.ray_runtime import init_ray, shutdown_ray
    from serving.deploy import deploy, direct_ingress_urls, serve_url

    config = build_config(settings, args)
    app = config["applications"][0]
    local = not settings.ray_address
    if local:  # on a cluster the models directory is the cluster's; the builder checks there
        versions = _check_models(settings, app["args"])
        print(f"rtml serve: models {', '.join(versions)}", flush=True)
        init_ray(settings, dashboard=True)
    else:
        init_ray(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        deploy(config)
        url = serve_url()  # where Serve listens (a Serve already running keeps its port)
        print(f"rtml serve: app {app['name']!r} running at {url} (API docs: {url}/docs)")
        direct = direct_ingress_urls(app["name"])
        if direct:
            print(
                f"rtml serve: its ingress replicas also answer directly at {', '.join(direct)}"
                " (no proxy hop; the front for a load balancer, see docs/serving.md)"
            )
        dashboard = _dashboard_url()
        if dashboard:
            print(f"rtml serve: Ray dashboard at {dashboard} (Serve tab)")
        if args.detach:
            return 0
        print("rtml serve: Ctrl-C stops", flush=True)
        stop.wait()
        print("rtml serve: stopping", flush=True)
        serve.delete(app["name"])
    finally:
        if local:
            serve.shutdown()
            shutdown_ray()
    return 0


def _dashboard_url() -> str | None:
    # Ray's dashboard address is only exposed by ray.init's return value (not kept by
    # rtml.ray_runtime.init_ray) and this worker helper.
    from ray._private.worker import get_dashboard_url

    url = get_dashboard_url()
    return f"http://{url}" if url and not url.startswith("http") else (url or None)


def config_command(settings: Settings, args: argparse.Namespace) -> int:
    text = render()
    if args.output:
        Path(args.output).write_text(text)
        print(f"rtml serve config: wrote {args.output}")
    else:
        print(text, end="")
    return 0


def reload_command(settings: Settings, args: argparse.Namespace) -> int:
    from rtml.ray_runtime import init_ray
    from serving.deploy import reload_models

    if not (args.fraud_model or args.recommender_model):
        raise ConfigError("name a model: --fraud-model and/or --recommender-model")
    # Join the Ray that runs the app: RAY_ADDRESS, else the local one `rtml serve` started.
    init_ray(
        settings if settings.ray_address else settings.model_copy(update={"ray_address": "auto"})
    )
    app = settings.rtml_serve_app
    config = reload_models(
        app,
        fraud=args.fraud_model,
        recommender=args.recommender_model,
        timeout_s=args.timeout,
    )
    for entry in config["applications"][0].get("deployments", []):
        if entry["name"] in (FRAUD_SCORER, RECOMMENDER) and "user_config" in entry:
            print(f"rtml serve reload: {entry['name']} serves {entry['user_config']['model']}")
    return 0
