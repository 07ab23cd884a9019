"""The reference scenarios' pure parts: the peers' record check and feature row, the window a
peer is timed over, and the checks that compare rtml with the naive pipeline and the peers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from bench import reference_features as ref
from bench.environment import BenchStack
from bench.measure import BenchError
from bench.options import QUICK, BenchOptions
from bench.peer_jobs.common import FEATURE_NAMES, check, dead_letter, dumps, features, loads
from bench.results import BenchResults, Measurement, Sample
from bench.scenario import BenchContext
from bench.scenarios import peers
from bench.scenarios.naive import ratio_check
from bench.scenarios.peers import measure_output, peers_check
from contracts.events import Transaction
from features.definitions import FRAUD_CARD
from rtml.settings import load_settings

TX = Transaction(
    event_id="e1",
    card_id="c1",
    user_id="u1",
    merchant_id="m1",
    merchant_category="grocery",
    amount=12.5,
    currency="EUR",
    lat=48.8,
    lon=2.3,
    event_time=1_700_000_000_000,
    channel="online",
)


def test_the_peers_name_the_engine_features_in_order() -> None:
    assert FRAUD_CARD.names == FEATURE_NAMES


def test_a_valid_transaction_gets_the_reference_features() -> None:
    tx = check(msgspec.json.encode(TX))
    assert isinstance(tx, dict)
    out = features(ref.new_state(), tx)
    expected = ref.update(ref.new_state(), TX.event_time, 12.5, "m1", 48.8, 2.3, True)
    assert out["event_id"] == "e1" and out["card_id"] == "c1"
    assert list(out["features"].values()) == list(expected)
    assert loads(dumps(out)) == out


def test_invalid_records_say_why() -> None:
    valid = msgspec.to_builtins(TX)
    cases = {
        None: "null",
        b"{not json": "malformed JSON",
        b"[1, 2]": "not a JSON object",
        b"\xff\xfe": "invalid UTF-8",
        dumps({**valid, "merchant_category": "x"}).replace(b'"x"', b'"\xed\xa0\x80"'): "UTF-8",
        dumps({**valid, "amount": "12.50"}): "amount must be a number",
        dumps({**valid, "amount": 0.0}): "amount out of range",
        dumps({**valid, "lat": 91.0}): "lat out of range",
        dumps({**valid, "event_time": "1"}): "event_time",
        dumps({**valid, "channel": "atm"}): "channel",
        dumps({k: v for k, v in valid.items() if k != "card_id"}): "card_id",
    }
    for value, reason in cases.items():
        error = check(value)
        assert isinstance(error, str) and reason in error, (value, error)
    assert dead_letter(3, 7, "x") == {"partition": 3, "offset": 7, "error": "x"}


def _context(tmp_path: Path, samples: dict[str, list[float]]) -> BenchContext:
    """Results with these measurements ("scenario/name": one value per round)."""
    options = BenchOptions(mode="quick", scenarios=("naive",), sizes=replace(QUICK), out=tmp_path)
    results = BenchResults("test", "quick", {}, {}, "now")
    for id_, values in samples.items():
        scenario, _, name = id_.partition("/")
        m = results.declare(Measurement(scenario, name, name, "events/s"))
        m.samples += [Sample(r, v) for r, v in enumerate(values)]
    stack = BenchStack(load_settings(), tmp_path, temporary=False, owns_services=False)
    return BenchContext(options, stack, results, tmp_path, "test", lambda _: None)


def test_naive_check_prefers_e2e_and_falls_back_to_the_feature_stage(tmp_path: Path) -> None:
    ctx = _context(
        tmp_path, {"naive/per-event": [400.0, 500.0], "features/ray-2": [30_000.0, 20_000.0]}
    )
    check_ = ratio_check(ctx)
    assert check_.met is True and "features/ray-2" in check_.value
    assert "no e2e results" in check_.detail
    e2e = ctx.results.declare(Measurement("e2e", "ray-1", "e2e", "events/s"))
    e2e.samples += [Sample(0, 3_000.0), Sample(1, 4_000.0)]
    check_ = ratio_check(ctx)
    assert check_.met is False and "e2e/ray-1" in check_.value  # 7.5x and 8x: under 10x


def test_naive_check_is_undecided_without_naive_results(tmp_path: Path) -> None:
    ctx = _context(tmp_path, {"features/ray-1": [30_000.0]})
    assert ratio_check(ctx).met is None


def test_peers_check_needs_rtml_faster_than_every_peer(tmp_path: Path) -> None:
    ctx = _context(
        tmp_path,
        {
            "features/ray-1": [20_000.0, 22_000.0],
            "peers/quix": [8_000.0, 9_000.0],
            "peers/bytewax": [10_000.0, 25_000.0],
        },
    )
    result = peers_check(ctx, {"faust": "not installed"})
    assert result.met is True  # bytewax: 2.0x and 0.88x, median 1.44x
    assert "bytewax" in result.value and "faust skipped: not installed" in result.detail
    ctx.results.measurement("peers/bytewax").samples[0].value = 40_000.0  # type: ignore[union-attr]
    assert peers_check(ctx, {}).met is False


def test_peers_check_is_undecided_when_no_peer_ran(tmp_path: Path) -> None:
    ctx = _context(tmp_path, {"features/ray-1": [20_000.0]})
    result = peers_check(ctx, {"quix": "not installed"})
    assert result.met is None and "quix skipped" in result.detail


def _counter(values: list[int]):
    """A count() that returns the next value each call (the last one forever)."""
    it = iter(values)
    last = [0]

    async def count() -> int:
        last[0] = next(it, last[0])
        return last[0]

    return count


async def test_peer_window_runs_from_first_output_to_total(tmp_path: Path) -> None:
    ready: list[bool] = []
    window = await measure_output(
        "peers/x",
        _counter([0, 0, 100, 600, 1_000]),
        1_000,
        max_seconds=60.0,
        on_ready=lambda: ready.append(True),
        log=tmp_path / "log",
        interval_s=0.01,
    )
    assert ready == [True]
    assert window.events == 900 and window.bounded_by == "events"
    assert window.seconds > 0 and window.startup_s > 0


async def test_peer_window_ends_after_max_seconds(tmp_path: Path) -> None:
    window = await measure_output(
        "peers/x",
        _counter([10, 20]),  # 20 from the second look on, whatever the time
        1_000,
        max_seconds=0.05,
        on_ready=lambda: None,
        log=tmp_path / "log",
        interval_s=0.01,
    )
    assert window.bounded_by == "time" and window.events == 10


async def test_peer_window_refuses_a_run_that_was_over_at_the_first_look(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="were out at the first look"):
        await measure_output(
            "peers/x",
            _counter([950]),
            1_000,
            max_seconds=60.0,
            on_ready=lambda: None,
            log=tmp_path / "log",
            interval_s=0.01,
        )


async def test_peer_window_gives_up_without_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "STARTUP_TIMEOUT_S", 0.05)
    (tmp_path / "log").write_text("starting\nTraceback: boom\n")
    with pytest.raises(BenchError, match=r"no output after .*boom"):
        await measure_output(
            "peers/x",
            _counter([0]),
            1_000,
            max_seconds=60.0,
            on_ready=lambda: None,
            log=tmp_path / "log",
            interval_s=0.01,
        )
