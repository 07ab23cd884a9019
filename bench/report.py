"""Rendering results for people: a Markdown report and PNG plots.

``render_markdown`` is pure (results in, text out). ``write_plots`` needs matplotlib (the
``bench`` extra); without it the run still writes its JSON and Markdown and says so.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.results import BenchResults, Measurement, Series

# Sample details shown as columns of the cost table (median over the samples), when present.
DETAIL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("events", "events"),
    ("seconds", "measured s"),
    ("startup_s", "startup s"),
    ("consumer_cpu_us_per_event", "consumer CPU us/event"),
    ("consumer_cores", "consumer cores"),
    ("broker_cores", "broker cores"),
    ("redis_cores", "Redis cores"),
    ("other_cores", "other load (cores)"),
)


def fmt_value(value: float, unit: str) -> str:
    """A number as a person reads it: thousands separators for rates, decimals for seconds."""
    if unit in ("events/s", "records/s", "keys"):
        return f"{value:,.0f}"
    if unit == "x":
        return f"{value:.3f}x" if value < 0.1 else f"{value:.2f}x"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def machine_line(machine: dict[str, Any]) -> str:
    parts = [
        machine.get("cpu_model", "unknown CPU"),
        f"{machine.get('cores', '?')} cores",
        f"{machine.get('memory_gib', 0):.1f} GiB",
        machine.get("os", ""),
    ]
    versions = machine.get("versions", {})
    soft = ", ".join(f"{name} {version}" for name, version in versions.items())
    return "; ".join(p for p in parts if p) + (f"; {soft}" if soft else "")


def measurement_rows(results: BenchResults) -> list[list[str]]:
    rows = []
    for m in results.measurements:
        summary = m.summary()
        if summary is None:
            rows.append([f"`{m.id}`", m.label, "not measured", "", "", "0", ""])
            continue
        versus = "; ".join(
            f"{fmt_value(r.summary.median, 'x')} of `{r.baseline}` "
            f"({fmt_value(r.summary.min, 'x')} - {fmt_value(r.summary.max, 'x')})"
            for r in results.ratios_of(m.id)
        )
        rows.append(
            [
                f"`{m.id}`",
                m.label,
                f"{fmt_value(summary.median, m.unit)} {m.unit}",
                f"{fmt_value(summary.min, m.unit)} - {fmt_value(summary.max, m.unit)}",
                f"{summary.spread:.0%}",
                str(summary.n),
                versus,
            ]
        )
    return rows


def _detail_median(m: Measurement, key: str) -> float | None:
    values = [s.details[key] for s in m.samples if isinstance(s.details.get(key), int | float)]
    return statistics.median(values) if values else None


def cost_rows(results: BenchResults) -> tuple[list[str], list[list[str]]]:
    """Medians of the explanatory details (CPU per event, who used the cores)."""
    keys = [
        (key, title)
        for key, title in DETAIL_COLUMNS
        if any(_detail_median(m, key) is not None for m in results.measurements)
    ]
    rows = []
    for m in results.measurements:
        values = [_detail_median(m, key) for key, _ in keys]
        if all(v is None for v in values):
            continue
        rows.append(
            [f"`{m.id}`"]
            + [
                "" if v is None else fmt_value(v, "events" if k == "events" else "")
                for v, (k, _) in zip(values, keys, strict=True)
            ]
        )
    return ["measurement", *(title for _, title in keys)], rows


def series_rows(series: Sequence[Series]) -> list[list[str]]:
    rows = []
    for s in series:
        stats = s.stats()
        if stats is None:
            continue
        rows.append(
            [
                f"`{s.id}`",
                s.label,
                s.unit,
                fmt_value(stats["start"], s.unit),
                fmt_value(stats["end"], s.unit),
                fmt_value(stats["max"], s.unit),
                f"{stats['seconds']:.0f}",
                str(len(s.points)),
            ]
        )
    return rows


def render_markdown(results: BenchResults) -> str:
    m = results.machine
    commit = m.get("git_commit") or "unknown"
    dirty = " (uncommitted changes)" if m.get("git_dirty") else ""
    lines = [
        f"# rtml bench: {results.mode} run",
        "",
        f"- started {results.started_at}, finished {results.finished_at or '-'}",
        f"- command: `{results.command}`",
        f"- commit: `{commit}`{dirty}",
        f"- machine: {machine_line(m)}",
    ]
    if m.get("load_average") is not None:
        load = ", ".join(f"{x:.2f}" for x in m["load_average"])
        lines.append(f"- load average at start (1, 5, 15 min): {load}")
    for name, workload in results.workloads.items():
        facts = ", ".join(f"{k} {_fmt_fact(v)}" for k, v in workload.items())
        lines.append(f"- workload `{name}`: {facts}")
    lines += [
        "",
        "Medians over the rounds, with the min - max range; ratios are paired by round (both "
        "measured under the same background load).",
        "",
        "## Measurements",
        "",
    ]
    lines += _table(
        ["measurement", "what", "median", "min - max", "spread", "n", "vs baseline"],
        measurement_rows(results),
        "llrrrrl",
    )
    header, rows = cost_rows(results)
    if rows:
        lines += ["", "## Where the CPU went (medians per sample)", ""]
        lines += _table(header, rows, "l" + "r" * (len(header) - 1))
    srows = series_rows(results.series)
    if srows:
        lines += ["", "## Over time", ""]
        lines += _table(
            ["series", "what", "unit", "start", "end", "max", "seconds", "points"],
            srows,
            "lllrrrrr",
        )
    if results.checks:
        lines += ["", "## Targets", ""]
        for check in results.checks:
            mark = {True: "met", False: "NOT met", None: "not decided"}[check.met]
            detail = f": {check.detail}" if check.detail else ""
            lines.append(
                f"- **{check.name}**: target {check.target}, measured {check.value}: "
                f"**{mark}**{detail}"
            )
    if results.artifacts:
        lines += ["", "## Files", ""]
        lines += [f"- [{name}]({name})" for name in results.artifacts]
    if results.notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in results.notes]
    return "\n".join(lines) + "\n"


def _fmt_fact(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


# --- plots -------------------------------------------------------------------------------------


def plots_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_plots(
    results: BenchResults, out_dir: Path, stem: str, *, target: float | None = None
) -> list[Path]:
    """PNG plots of the rates and the series; [] when matplotlib is not installed."""
    if not plots_available():
        return []
    import matplotlib

    matplotlib.use("Agg")
    written = []
    rates = [m for m in results.measurements if m.unit == "events/s" and m.samples]
    if rates:
        written.append(_plot_rates(rates, out_dir / f"{stem}-throughput.png", results, target))
    memory = [s for s in results.series if s.points]
    if memory:
        written.append(_plot_series(memory, out_dir / f"{stem}-memory.png", results))
    return written


def _plot_rates(
    rates: list[Measurement], path: Path, results: BenchResults, target: float | None
) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rates) + 1.6))
    labels, medians, low, high, tops, colors = [], [], [], [], [], []
    palette = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]
    scenarios = list(dict.fromkeys(m.scenario for m in rates))
    for m in reversed(rates):
        s = m.summary()
        assert s is not None
        labels.append(m.id)
        medians.append(s.median)
        low.append(s.median - s.min)
        high.append(s.max - s.median)
        tops.append(s.max)
        colors.append(palette[scenarios.index(m.scenario) % len(palette)])
    ax.barh(labels, medians, xerr=[low, high], color=colors, capsize=3)
    for y, (value, top) in enumerate(zip(medians, tops, strict=True)):
        ax.text(top * 1.04, y, f"{value:,.0f}", va="center", fontsize=8)
    if target is not None:
        ax.axvline(target, color="black", linestyle="--", linewidth=1)
        ax.text(target, len(rates) - 0.4, f" target {target:,.0f}/s", fontsize=8)
    ax.set_xscale("log")
    lowest = min(m - lo for m, lo in zip(medians, low, strict=True))
    ax.set_xlim(left=10 ** math.floor(math.log10(lowest)), right=max(tops) * 1.6)
    ax.set_xlabel("events/s (log scale; bar = median, whiskers = min - max)")
    ax.set_title(f"rtml bench ({results.mode}): throughput", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_series(series: list[Series], path: Path, results: BenchResults) -> Path:
    import matplotlib.pyplot as plt

    units = list(dict.fromkeys(s.unit for s in series))
    fig, ax = plt.subplots(figsize=(9, 4))
    axes = {units[0]: ax}
    for unit in units[1:2]:
        axes[unit] = ax.twinx()
    styles = ["-", "--", ":", "-."]
    for i, s in enumerate(series):
        target_ax = axes.get(s.unit)
        if target_ax is None:
            continue
        ts = [t for t, _ in s.points]
        vs = [v for _, v in s.points]
        target_ax.plot(ts, vs, styles[i % len(styles)], label=f"{s.label} ({s.unit})")
    for unit, a in axes.items():
        a.set_ylabel(unit)
        a.set_ylim(bottom=0)
    ax.set_xlabel("seconds")
    handles = [h for a in axes.values() for h in a.get_legend_handles_labels()[0]]
    names = [n for a in axes.values() for n in a.get_legend_handles_labels()[1]]
    ax.legend(handles, names, loc="lower right", fontsize=8)
    ax.set_title(f"rtml bench ({results.mode}): over time", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
