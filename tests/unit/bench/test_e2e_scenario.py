"""The e2e scenario's pure parts: its cases (the latency configuration beside the loads) and the
end-to-end latency check, which decides on the latency configuration and reports the
throughput configuration's load at the same rate beside it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bench.environment import BenchStack
from bench.options import QUICK, BenchOptions
from bench.results import BenchResults, Measurement, Sample
from bench.scenario import BenchContext
from bench.scenarios import e2e
from rtml.settings import TopicSpec, load_settings


def _context(tmp_path: Path, samples: dict[str, list[tuple[float, float]]]) -> BenchContext:
    """Results with e2e measurements: name -> (visible p99, produced p99) per round."""
    options = BenchOptions(mode="quick", scenarios=("e2e",), sizes=replace(QUICK), out=tmp_path)
    results = BenchResults("test", "quick", {}, {}, "now")
    for name, rounds in samples.items():
        m = results.declare(Measurement("e2e", name, name, "ms", higher_is_better=False))
        for r, (visible, produced) in enumerate(rounds):
            details = {
                "rate": 2_000.0,
                "visible_p99_ms": visible,
                "produced_p99_ms": produced,
                "partitions": 8,
                "sustained": True,
            }
            m.samples.append(Sample(r, visible, details))
    stack = BenchStack(load_settings(), tmp_path, temporary=False, owns_services=False)
    return BenchContext(options, stack, results, tmp_path, "test", lambda _: None)


def test_the_latency_configuration_runs_beside_the_loads_on_topics_of_its_own(
    tmp_path: Path,
) -> None:
    ctx = _context(tmp_path, {})
    names = [c.name for c in e2e.E2EScenario().cases(ctx)]
    assert names[-1] == "latency-2000"
    assert [n for n in names if n.startswith("load-")] == [f"load-{r:g}" for r in QUICK.loads]
    topics = [(c.prefix, c.partitions) for c in e2e._load_configs(ctx)]
    assert topics == [("e2e", ctx.options.partitions), ("e2e-latency", 1)]


def test_latency_check_decides_on_the_latency_configuration(tmp_path: Path) -> None:
    ctx = _context(
        tmp_path,
        {
            "latency-2000": [(45.0, 38.0), (66.0, 51.0), (48.0, 40.0)],
            "load-2000": [(161.0, 138.0), (90.0, 70.0), (120.0, 100.0)],
        },
    )
    check = e2e._latency_check(ctx)
    assert check.met is True  # medians: visible 48, produced 40
    assert check.value == "visible 48.0 ms, produced 40.0 ms"
    assert "1 input partition, 1 actor" in check.target
    assert "45.0, 66.0, 48.0" in check.detail
    assert "(8 partitions, 2 actors)" in check.detail and "visible 120.0 ms" in check.detail


def test_latency_check_needs_both_latencies_under_the_target(tmp_path: Path) -> None:
    ctx = _context(tmp_path, {"latency-2000": [(55.0, 40.0), (52.0, 45.0)]})
    check = e2e._latency_check(ctx)
    assert check.met is False and "throughput configuration" not in check.detail
    ctx = _context(tmp_path, {"latency-2000": [(45.0, 52.0)]})
    assert e2e._latency_check(ctx).met is False


def test_latency_check_without_the_latency_case_is_undecided(tmp_path: Path) -> None:
    ctx = _context(tmp_path, {"load-2000": [(90.0, 70.0)]})
    check = e2e._latency_check(ctx)
    assert check.met is None
    assert check.value == "not measured (with 2 actors: visible 90.0 ms, produced 70.0 ms)"
    assert e2e._latency_check(_context(tmp_path, {})).value == "not measured"


def test_the_score_reader_reads_every_partition_up_to_the_threshold_and_a_share_above() -> None:
    topic = TopicSpec(name="fraud-scores", partitions=8)
    assert e2e.read_partitions(e2e.READ_ALL_UP_TO, topic) == list(range(8))
    assert e2e.read_partitions(20_000, topic) == [0, 1]
    assert e2e.read_partitions(20_000, TopicSpec(name="fraud-scores", partitions=1)) == [0]
