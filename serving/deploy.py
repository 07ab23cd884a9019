"""Deploying the app from a Serve config, as ``serve run serve_config.yaml`` does, and
hot-reloading its models.

A config deploy (the declarative API) is what makes hot reload possible: Serve then knows the
app's code version (its import path, runtime env and args) and applies a change to a
deployment's ``user_config`` to the running replicas (``reconfigure``) instead of replacing
them. ``serve.run(app)`` (the imperative API) gives every deploy a new code version, so it
restarts replicas instead.

Serve has no public Python call for a config deploy; ``serve run CONFIG`` itself uses the
controller client's ``deploy_apps``. The two private calls are confined to ``_client``.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

from models.errors import ArtifactError
from rtml.errors import ServiceError, ServiceUnavailable
from serving.config import FRAUD_SCORER, RECOMMENDER, parse_args
from serving.errors import ServingConfigError
from serving.models import Kind, pin_version
from serving.replica import models_dir_of, replica_settings

log = logging.getLogger(__name__)

_WILDCARD_HOSTS = ("0.0.0.0", "::")
_REPLICA_TARGET = "SERVE_REPLICA::"  # Serve's name of a replica's target (a proxy's differs)


def _client(http_options: dict[str, Any] | None = None, proxy_location: str | None = None) -> Any:
    """The Serve controller client, starting Serve (with these HTTP options) if needed."""
    from ray.serve._private.api import serve_start

    return serve_start(http_options=http_options, proxy_location=proxy_location)


def validate_config(config: dict[str, Any]) -> Any:
    """The config as Serve's ``ServeDeploySchema``, or ``ServingConfigError`` saying why not."""
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    try:
        return ServeDeploySchema.model_validate(config)
    except ValidationError as exc:
        raise ServingConfigError(f"invalid Serve config: {exc}") from exc


def deploy(config: dict[str, Any], *, timeout_s: float = 180.0) -> None:
    """Deploy (or update) the applications of ``config`` and wait until they run."""
    schema = validate_config(config)
    client = _client(config.get("http_options"), config.get("proxy_location"))
    started = time.time()
    client.deploy_apps(schema)
    for app in schema.applications:
        wait_running(app.name, since=started, timeout_s=timeout_s)


def wait_running(app_name: str, *, since: float = 0.0, timeout_s: float = 180.0) -> None:
    """Wait until ``app_name``'s deploy at or after ``since`` (epoch s) runs; raise with Serve's
    message if it fails."""
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        status = serve.status().applications.get(app_name)
        if status is not None and status.last_deployed_time_s >= since - 1.0:
            if status.status == ApplicationStatus.RUNNING:
                return
            if status.status == ApplicationStatus.DEPLOY_FAILED:
                raise ServiceError("serve", f"app {app_name!r} failed to deploy: {status.message}")
        time.sleep(0.25)
    state = f"{status.status}: {status.message}" if status is not None else "not found"
    raise ServiceUnavailable("serve", f"app {app_name!r} not running after {timeout_s}s ({state})")


def running_config(app_name: str) -> dict[str, Any]:
    """The Serve config (single-app deploy schema) ``app_name`` was last deployed with."""
    details = _client().get_serve_details()
    app = details.get("applications", {}).get(app_name)
    if app is None or app.get("deployed_app_config") is None:
        raise ServingConfigError(
            f"no app {app_name!r} deployed from a config is running (start it with `rtml serve`)"
        )
    config = {
        "applications": [copy.deepcopy(app["deployed_app_config"])],
    }
    http = details.get("http_options")
    if http:
        config["http_options"] = {
            key: http[key] for key in ("host", "port", "request_timeout_s") if key in http
        }
    return config


def with_models(
    config: dict[str, Any],
    app_name: str,
    *,
    fraud: str | None = None,
    recommender: str | None = None,
) -> dict[str, Any]:
    """``config`` with the model deployments' ``user_config`` naming these models (hot reload:
    the args, hence the code version, stay the same)."""
    config = copy.deepcopy(config)
    apps = [a for a in config.get("applications", []) if a.get("name") == app_name]
    if not apps:
        raise ServingConfigError(f"the config has no application {app_name!r}")
    deployments = apps[0].setdefault("deployments", [])
    for name, model in ((FRAUD_SCORER, fraud), (RECOMMENDER, recommender)):
        if model is None:
            continue
        entry = next((d for d in deployments if d.get("name") == name), None)
        if entry is None:
            entry = {"name": name}
            deployments.append(entry)
        entry["user_config"] = {"model": model}
    return config


def reload_models(
    app_name: str,
    *,
    fraud: str | None = None,
    recommender: str | None = None,
    timeout_s: float = 180.0,
) -> dict[str, Any]:
    """Point the running app's model deployments at other models; returns the applied config.

    The replicas load the new artifacts while serving, then swap; nothing is restarted."""
    if fraud is None and recommender is None:
        raise ServingConfigError("name a model to load (--fraud-model and/or --recommender-model)")
    config = running_config(app_name)
    fraud = _pin(config, "fraud", fraud)
    recommender = _pin(config, "recsys", recommender)
    config = with_models(config, app_name, fraud=fraud, recommender=recommender)
    deploy(config, timeout_s=timeout_s)
    return config


def _pin(config: dict[str, Any], kind: Kind, ref: str | None) -> str | None:
    """``ref``, with "latest" pinned to the version it means now when the app's models directory
    is visible here (else each replica resolves "latest" itself when it reconfigures)."""
    if ref != "latest":
        return ref
    args = parse_args(config["applications"][0].get("args"))
    try:
        return pin_version(models_dir_of(args, replica_settings(args)), kind, ref)
    except ArtifactError:
        return ref


def serve_url() -> str:
    """The URL Serve's HTTP proxy actually listens on (the first ``serve.start`` in a cluster
    sets it; later configs cannot change it)."""
    http = _client().http_config
    host = "127.0.0.1" if http.host in _WILDCARD_HOSTS else http.host
    return f"http://{host}:{http.port}"


def direct_ingress_urls(app_name: str) -> list[str]:
    """The HTTP URLs of ``app_name``'s running Ingress replicas themselves (empty when Serve
    runs without direct ingress, i.e. without throughput mode).

    In throughput mode each ingress replica also serves HTTP on a port of its own (30000 and
    up), the same API without the hop through Serve's Python proxy, which costs more CPU per
    request than the ingress itself (docs/serving.md). A load balancer in front of these URLs
    is the fast front; they come and go with the replicas, so read them again after scaling.
    A replica binds the proxy's host: on a loopback host the URL names that host (Serve
    reports the node's address, where nothing listens then).
    """
    details = _client().get_serve_details()
    host = details.get("http_options", {}).get("host")
    urls = []
    for group in details.get("target_groups", []):
        if group.get("app_name") != app_name or group.get("protocol") != "HTTP":
            continue
        for target in group.get("targets", []):
            if not str(target.get("name", "")).startswith(_REPLICA_TARGET):
                continue  # the proxy, standing in while no replica runs
            ip = target["ip"] if host is None or host in _WILDCARD_HOSTS else host
            urls.append(f"http://{ip}:{target['port']}")
    return urls
