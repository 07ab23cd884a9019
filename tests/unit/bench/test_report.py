"""The Markdown report and the plots, from hand-made results (no services, no timing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.report import fmt_value, measurement_rows, render_markdown, write_plots
from bench.results import Measurement
from tests.unit.bench.test_results import make_results


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (31_234.6, "events/s", "31,235"),
        (0.0423, "x", "0.042x"),
        (0.156, "x", "0.16x"),
        (1.5, "s", "1.50"),
        (612.34, "MiB", "612.3"),
        (1_300_000.0, "keys", "1,300,000"),
    ],
)
def test_numbers_read_as_a_person_expects(value: float, unit: str, text: str) -> None:
    assert fmt_value(value, unit) == text


def test_measurement_rows_show_median_range_and_paired_ratio() -> None:
    rows = {row[0]: row for row in measurement_rows(make_results())}
    consume = rows["`ceiling/consume`"]
    assert consume[2] == "150,000 events/s"
    assert consume[3] == "100,000 - 200,000"
    assert consume[4] == "67%"
    assert consume[6] == ""
    features = rows["`features/ray-1`"]
    assert features[6] == "0.15x of `ceiling/consume` (0.10x - 0.20x)"


def test_markdown_has_every_section() -> None:
    results = make_results()
    results.declare(Measurement("features", "ray-2", "two actors", "events/s"))  # no samples
    text = render_markdown(results)
    assert text.startswith("# rtml bench: quick run\n")
    assert "- command: `rtml bench --quick`" in text
    assert "| `features/ray-2` | two actors | not measured |" in text
    assert "## Where the CPU went" in text
    assert "| `features/ray-1` | 300,000 |" in text  # the events column of the cost table
    assert "| `memory/rss` | actor RSS | MiB | 200.0 | 260.0 | 260.0 | 5 | 2 |" in text
    assert "**target**: target >= 30,000 tx/s, measured 20,000 tx/s: **NOT met**: ray-1" in text
    assert "- [quick-throughput.png](quick-throughput.png)" in text
    assert "- a note" in text


def test_pipes_in_labels_do_not_break_the_table() -> None:
    results = make_results()
    results.declare(Measurement("x", "y", "a | b", "s")).samples.append(
        make_results().measurements[0].samples[0]
    )
    assert "a \\| b" in render_markdown(results)


def test_plots_are_png_files(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    paths = write_plots(make_results(), tmp_path, "quick", target=30_000.0)
    assert [p.name for p in paths] == ["quick-throughput.png", "quick-memory.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
