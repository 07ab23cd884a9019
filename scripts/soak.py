"""Soak run (not in CI): the fraud pipeline under steady synthetic load for a long time,
recording every consumer actor's resident memory and the group's lag.

Run it through ``scripts/soak.sh``, which starts a private stack first. It writes, under
``--output``, ``samples.csv`` (one row per interval: rate, lag, the largest actor RSS, the
interval's end-to-end latency percentiles from the actors' histograms) and ``summary.json``, and
exits 1 unless memory stayed flat (the median RSS of the last quarter within ``--max-growth-mb``
of the second quarter's, after warm-up), the lag did not grow (the last quarter's median within
``--max-lag-growth`` records of the second quarter's) and drained to zero once the load stopped.

``--scoring`` runs the whole pipeline: it trains small models when there are none (as
``rtml demo`` does) and deploys the Serve app, so every transaction is also scored.
``--historical-days N`` replays N simulated days paced at ``--rate`` instead of live traffic, so
the long windows (24 hours) fill and turn over within the run and memory can level off.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def rss_mb(pid: int) -> float | None:
    """Resident memory of a local process in MB (None when it is gone or remote)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="load duration (30)")
    parser.add_argument("--rate", type=int, default=1000, help="records/s produced (1000)")
    parser.add_argument("--actors", type=int, default=1, help="fraud consumer actors (1)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--max-growth-mb", type=float, default=64.0, help="flat memory bound")
    parser.add_argument(
        "--max-lag-growth", type=int, default=5_000, help="bound on lag growth (records)"
    )
    parser.add_argument("--users", type=int, default=10_000, help="synthetic users (10000)")
    parser.add_argument(
        "--historical-days", type=float, default=None, help="replay N days paced at --rate"
    )
    parser.add_argument("--scoring", action="store_true", help="deploy Serve and score")
    parser.add_argument("--output", type=Path, default=Path("soak-results"))
    return parser.parse_args(argv)


def sample(group: Any, started: float, last: dict[str, Any]) -> dict[str, Any]:
    from monitoring.metrics import LATENCY_BUCKETS, BucketCounts

    stats = group.stats()
    records = sum(s["records"] for s in stats)
    now = time.monotonic()
    rate = (records - last["records"]) / max(1e-9, now - last["at"])
    # The actors' end-to-end histograms are cumulative: this interval is the difference.
    counts = np.zeros(len(LATENCY_BUCKETS) + 1, dtype=np.int64)
    for s in stats:
        counts += np.asarray(s["metrics"]["end_to_end_seconds"]["buckets"], dtype=np.int64)
    interval = BucketCounts(LATENCY_BUCKETS)
    interval.counts = np.maximum(counts - last["buckets"], 0)
    last.update(records=records, at=now, buckets=counts)
    rss = [rss_mb(s["pid"]) for s in stats]
    p50, p99 = interval.quantile(0.50), interval.quantile(0.99)
    return {
        "elapsed_s": round(now - started, 1),
        "records": records,
        "records_per_s": round(rate, 1),
        "lag": sum(sum(s["lag"].values()) for s in stats),
        "rss_mb_max": round(max((r for r in rss if r is not None), default=0.0), 1),
        "e2e_p50_ms": None if p50 is None else round(p50 * 1000, 1),
        "e2e_p99_ms": None if p99 is None else round(p99 * 1000, 1),
        "failures": sum(s["failures"] for s in stats),
        "dead_letters": sum(sum(s["pipeline"]["dead_letters"].values()) for s in stats),
    }


def summarize(rows: list[dict[str, Any]], load_rows: int, args: argparse.Namespace) -> dict:
    loaded = rows[:load_rows] or rows
    quarter = max(1, len(loaded) // 4)

    def second_and_last_quarter(field: str) -> tuple[float, float]:
        second = loaded[quarter : 2 * quarter] or loaded
        return (
            statistics.median(r[field] for r in second),
            statistics.median(r[field] for r in loaded[-quarter:]),
        )

    early, late = second_and_last_quarter("rss_mb_max")
    lag_early, lag_late = second_and_last_quarter("lag")
    p99s = [r["e2e_p99_ms"] for r in loaded if r["e2e_p99_ms"] is not None]
    final_lag = rows[-1]["lag"]
    summary = {
        "samples": len(rows),
        "records": rows[-1]["records"],
        "mean_records_per_s": round(statistics.mean(r["records_per_s"] for r in loaded), 1),
        "rss_mb_after_warmup": early,
        "rss_mb_last_quarter": late,
        "rss_growth_mb": round(late - early, 1),
        "max_lag": max(r["lag"] for r in rows),
        "lag_median_second_quarter": lag_early,
        "lag_median_last_quarter": lag_late,
        "final_lag": final_lag,
        "e2e_p99_ms_median_of_intervals": statistics.median(p99s) if p99s else None,
        "e2e_p99_ms_worst_interval": max(p99s) if p99s else None,
        "failures": rows[-1]["failures"],
        "dead_letters": rows[-1]["dead_letters"],
        "memory_flat": late - early <= args.max_growth_mb,
        "lag_not_growing": lag_late - lag_early <= args.max_lag_growth,
        "lag_drained": final_lag == 0,
    }
    summary["ok"] = summary["memory_flat"] and summary["lag_not_growing"] and summary["lag_drained"]
    return summary


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """RSS, lag and the interval p99 over the run (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    t = [r["elapsed_s"] / 60 for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    for ax, field, label in zip(
        axes,
        ("rss_mb_max", "lag", "e2e_p99_ms"),
        ("largest actor RSS (MB)", "group lag (records)", "end-to-end p99 (ms)"),
        strict=True,
    ):
        ax.plot(t, [r[field] if r[field] is not None else float("nan") for r in rows])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_yscale("log")  # the first interval holds the start-up
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from consumers.actors import ConsumerGroup
    from rtml.ray_runtime import init_ray, shutdown_ray
    from rtml.settings import load_settings

    settings = load_settings()
    args.output.mkdir(parents=True, exist_ok=True)
    if args.scoring:
        from rtml.demo import train_if_missing

        train_if_missing(settings)
        settings = settings.model_copy(update={"rtml_fraud_scoring": True})
    init_ray(settings)
    if args.scoring:
        from rtml.demo import deploy_serving

        deploy_serving(settings)
    group = ConsumerGroup(settings, "fraud")
    rows: list[dict[str, Any]] = []
    load_rows = 0
    rtml = str(Path(sys.executable).with_name("rtml"))
    # Transactions only: the fraud pipeline reads nothing else.
    produce = [rtml, "produce", "--quiet", "--users", str(args.users), "--rate", str(args.rate)]
    produce += ["--sessions-per-user-day", "0"]
    if args.historical_days:
        produce += ["--historical-days", str(args.historical_days)]
    else:
        produce += ["--duration", str(args.minutes * 60)]
    producer = subprocess.Popen(produce, stdout=subprocess.DEVNULL)
    stopped = False
    try:
        group.scale(args.actors)
        started = time.monotonic()
        last: dict[str, Any] = {"records": 0.0, "at": started, "buckets": 0}
        with (args.output / "samples.csv").open("w", newline="") as handle:
            writer: csv.DictWriter[str] | None = None
            drain_deadline: float | None = None
            while True:
                time.sleep(args.interval)
                row = sample(group, started, last)
                rows.append(row)
                if writer is None:
                    writer = csv.DictWriter(handle, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
                handle.flush()
                print(json.dumps(row), flush=True)
                if producer.poll() is None:
                    load_rows = len(rows)
                    if time.monotonic() - started < args.minutes * 60:
                        continue
                    stopped = True  # a replay longer than the run: the load ends here
                    producer.terminate()
                    producer.wait()
                drain_deadline = drain_deadline or time.monotonic() + 120
                if row["lag"] == 0 or time.monotonic() > drain_deadline:
                    break
        if producer.returncode != 0 and not stopped:
            print(f"soak: rtml produce exited {producer.returncode}", file=sys.stderr)
            return 1
    finally:
        if producer.poll() is None:
            producer.terminate()
            producer.wait()
        group.stop()
        shutdown_ray()
    summary = summarize(rows, load_rows, args)
    summary |= {
        "command": " ".join(["scripts/soak.sh", *argv]),
        "minutes": args.minutes,
        "rate": args.rate,
        "actors": args.actors,
        "users": args.users,
        "historical_days": args.historical_days,
        "scoring": args.scoring,
    }
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(rows, args.output / "soak.png")
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
