"""`rtml status` and `rtml monitor` against the real broker."""

from __future__ import annotations

import asyncio
import io
import urllib.request

from infra.processes import free_port
from monitoring.cli import _monitor, watch
from rtml.settings import Settings


async def test_status_once_prints_every_topic_with_totals(stack_settings: Settings) -> None:
    out = io.StringIO()
    await watch(stack_settings, 1.0, None, once=True, out=out)
    text = out.getvalue()
    for spec in stack_settings.rtml_topics.all():
        assert spec.name in text
    assert "alerts: none firing" in text


async def test_status_live_view_shows_latency_and_alert_lines(stack_settings: Settings) -> None:
    out = io.StringIO()
    await watch(stack_settings, 0.5, 1.5, out=out)
    text = out.getvalue()
    assert "end-to-end latency" in text  # the scores follower runs in the live view
    assert "features updated" in text


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


async def test_monitor_serves_its_metrics_for_prometheus(stack_settings: Settings) -> None:
    port = free_port()
    task = asyncio.create_task(_monitor(stack_settings, 6.0, port))
    body = ""
    try:
        for _ in range(40):
            await asyncio.sleep(0.25)
            try:
                body = await asyncio.to_thread(
                    lambda: (
                        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                        .read()
                        .decode()
                    )
                )
            except OSError:
                continue
            if "rtml_consumer_status" in body:
                break
        assert 'rtml_consumer_status{group="rtml-fraud-features",status="unknown"} 1.0' in body
        assert "rtml_group_lag_records" in body
        assert "rtml_feature_age_seconds" in body
    finally:
        await task
