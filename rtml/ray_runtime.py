"""Connecting to Ray: an existing cluster (``RAY_ADDRESS``) or a local instance sized by settings.

On a small machine the logical CPU count is what lets several light actors (consumers at a
fraction of a CPU each) share two cores; it is a scheduling budget, not a thread count.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from rtml.errors import ServiceUnavailable
from rtml.settings import Settings

log = logging.getLogger(__name__)

NAMESPACE = "rtml"


def init_ray(settings: Settings, *, dashboard: bool = False, **overrides: Any) -> None:
    """Join ``settings.ray_address`` or start a local Ray; idempotent."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "namespace": NAMESPACE,
        "log_to_driver": settings.rtml_log_level == "DEBUG",
        "configure_logging": False,
    }
    if settings.ray_address:
        kwargs["address"] = settings.ray_address
    else:
        kwargs |= {
            # "local": always a new instance, never a cluster some other process started
            # with `ray start` on this machine (Ray would join that one by default).
            "address": "local",
            "num_cpus": settings.ray_num_cpus,
            "include_dashboard": dashboard,
            "object_store_memory": 512 * 1024 * 1024,
        }
        if settings.ray_metrics_export_port is not None:
            kwargs["_metrics_export_port"] = settings.ray_metrics_export_port
        # Read by Serve's processes when they start, which inherit this environment.
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = (
            "1" if settings.ray_serve_throughput_optimized else "0"
        )
    kwargs |= overrides
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise ServiceUnavailable("ray", f"cannot connect to {settings.ray_address}: {exc}") from exc
    log.info("ray ready: %s", ray.get_runtime_context().gcs_address)


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
