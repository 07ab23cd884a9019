"""Soak run (not in CI): the fraud pipeline under steady synthetic load for a long time,
recording every consumer actor's resident memory and the group's lag.

Run it through ``scripts/soak.sh``, which starts a private stack first. It writes, under
``--output``, ``samples.csv`` (one row per interval) and ``summary.json``, and exits 1 unless
memory stayed flat (the median RSS of the last quarter within ``--max-growth-mb`` of the second
quarter's, after warm-up) and the lag drained to zero once the load stopped.
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
    parser.add_argument("--output", type=Path, default=Path("soak-results"))
    return parser.parse_args(argv)


def sample(group: Any, started: float, last: dict[str, float]) -> dict[str, Any]:
    stats = group.stats()
    records = sum(s["records"] for s in stats)
    now = time.monotonic()
    rate = (records - last["records"]) / max(1e-9, now - last["at"])
    last.update(records=records, at=now)
    rss = [rss_mb(s["pid"]) for s in stats]
    return {
        "elapsed_s": round(now - started, 1),
        "records": records,
        "records_per_s": round(rate, 1),
        "lag": sum(sum(s["lag"].values()) for s in stats),
        "rss_mb_max": round(max((r for r in rss if r is not None), default=0.0), 1),
        "failures": sum(s["failures"] for s in stats),
        "dead_letters": sum(sum(s["pipeline"]["dead_letters"].values()) for s in stats),
    }


def summarize(rows: list[dict[str, Any]], load_rows: int, max_growth_mb: float) -> dict:
    loaded = rows[:load_rows] or rows
    quarter = max(1, len(loaded) // 4)
    early = statistics.median(r["rss_mb_max"] for r in loaded[quarter : 2 * quarter] or loaded)
    late = statistics.median(r["rss_mb_max"] for r in loaded[-quarter:])
    final_lag = rows[-1]["lag"]
    summary = {
        "samples": len(rows),
        "records": rows[-1]["records"],
        "mean_records_per_s": round(statistics.mean(r["records_per_s"] for r in loaded), 1),
        "rss_mb_after_warmup": early,
        "rss_mb_last_quarter": late,
        "rss_growth_mb": round(late - early, 1),
        "max_lag": max(r["lag"] for r in rows),
        "final_lag": final_lag,
        "failures": rows[-1]["failures"],
        "memory_flat": late - early <= max_growth_mb,
        "lag_drained": final_lag == 0,
    }
    summary["ok"] = summary["memory_flat"] and summary["lag_drained"]
    return summary


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from consumers.actors import ConsumerGroup
    from rtml.ray_runtime import init_ray, shutdown_ray
    from rtml.settings import load_settings

    settings = load_settings()
    args.output.mkdir(parents=True, exist_ok=True)
    init_ray(settings)
    group = ConsumerGroup(settings, "fraud")
    rows: list[dict[str, Any]] = []
    load_rows = 0
    rtml = str(Path(sys.executable).with_name("rtml"))
    producer = subprocess.Popen(
        [rtml, "produce", "--rate", str(args.rate), "--duration", str(args.minutes * 60)],
        stdout=subprocess.DEVNULL,
    )
    try:
        group.scale(args.actors)
        started = time.monotonic()
        last = {"records": 0.0, "at": started}
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
                    continue
                drain_deadline = drain_deadline or time.monotonic() + 120
                if row["lag"] == 0 or time.monotonic() > drain_deadline:
                    break
        if producer.returncode != 0:
            print(f"soak: rtml produce exited {producer.returncode}", file=sys.stderr)
            return 1
    finally:
        if producer.poll() is None:
            producer.terminate()
            producer.wait()
        group.stop()
        shutdown_ray()
    summary = summarize(rows, load_rows, args.max_growth_mb)
    summary |= {"minutes": args.minutes, "rate": args.rate, "actors": args.actors}
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
