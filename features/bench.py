"""Measure the engines' per-event cost: ``python -m features.bench [--events N] [--keys K]``.

Synthetic, deterministic streams: keys drawn with a skew (20% of events on 1% of the keys, the
rest uniform), event time advancing at 30k events/s with 5% of the events out of order (up to
2 min early). The first half of the stream warms the state up; the second half is measured in
poll-sized batches (CPU time, best of ``--repeat``), then a flush (``changelog``: the records
of every touched key) once per ``--flush-every`` events, as a consumer does at each commit.
``--gc-freeze`` calls ``gc.freeze()`` after the warm-up (what a consumer can do after
restoring state) so the collector stops re-scanning the long-lived state.

``--changelog-entries 3,11,41`` measures instead what the changelog costs per touched card
when each card holds that many entries (one every 10 s; card and pattern engines): its whole
state (``serialize``, one record per engine) against what ``changelog`` writes (the same whole
record up to ``WHOLE_MAX_ENTRIES``, else a head and the slice that changed), CPU time per card
(best of ``--repeat``) and bytes per card.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from contracts.events import Transaction, UserEvent, UserProfile
from features._engine import NO_TIME
from features.aggregates import GlobalViews
from features.fraud import FraudFeatureEngine
from features.patterns import PatternEngine
from features.patterns.language import load_rules
from features.recommendations import RecommendationFeatureEngine

T0 = 1_700_000_000_000


def _skewed(rng: random.Random, n: int) -> int:
    if rng.random() < 0.2:
        return rng.randrange(max(1, n // 100))
    return rng.randrange(n)


def _times(rng: random.Random, count: int, rate_per_s: float, ooo: float) -> list[int]:
    out = []
    for i in range(count):
        t = T0 + int(i * 1000 / rate_per_s)
        if rng.random() < ooo:
            t -= rng.randrange(120_000)
        out.append(t)
    return out


def transactions(count: int, cards: int, seed: int = 7, ooo: float = 0.05) -> list[Transaction]:
    rng = random.Random(seed)
    merchants = [f"m{i}" for i in range(5_000)]
    txs = []
    for i, t in enumerate(_times(rng, count, 30_000, ooo)):
        card = _skewed(rng, cards)
        txs.append(
            Transaction(
                event_id=f"e{i}",
                card_id=f"c{card}",
                user_id=f"u{card}",
                merchant_id=merchants[(card * 7 + rng.randrange(8)) % len(merchants)],
                merchant_category="grocery",
                amount=round(rng.lognormvariate(3.5, 1.0), 2),
                currency="EUR",
                lat=48.0 + rng.random(),
                lon=2.0 + rng.random(),
                event_time=t,
                channel="online" if rng.random() < 0.4 else "pos",
            )
        )
    return txs


def user_events(count: int, users: int, seed: int = 11, ooo: float = 0.05) -> list[UserEvent]:
    rng = random.Random(seed)
    out = []
    for i, t in enumerate(_times(rng, count, 30_000, ooo)):
        item = rng.randrange(20_000)
        r = rng.random()
        kind = "view" if r < 0.8 else "click" if r < 0.97 else "purchase"
        out.append(
            UserEvent(
                event_id=f"e{i}",
                user_id=f"u{_skewed(rng, users)}",
                item_id=f"i{item}",
                category=f"cat{item % 40}",
                event_type=kind,
                event_time=t,
            )
        )
    return out


def _measure(
    label: str,
    make: Callable[[], Any],
    events: Sequence[Any],
    step: Callable[[Any, Sequence[Any]], None],
    args: argparse.Namespace,
) -> None:
    half = len(events) // 2
    batches = [events[i : i + args.batch] for i in range(half, len(events), args.batch)]
    best_compute = best_flush = float("inf")
    for _ in range(args.repeat):
        engine = make()
        for i in range(0, half, args.batch):
            step(engine, events[i : i + args.batch])
        engine.changelog(0)
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        compute = flush = 0.0
        since_flush = 0
        for batch in batches:
            t0 = time.process_time()
            step(engine, batch)
            t1 = time.process_time()
            compute += t1 - t0
            since_flush += len(batch)
            if since_flush >= args.flush_every:
                engine.changelog(0)
                flush += time.process_time() - t1
                since_flush = 0
        gc.unfreeze()
        best_compute = min(best_compute, compute)
        best_flush = min(best_flush, flush)
    n = len(events) - half
    print(
        f"{label}: {best_compute / n * 1e6:.2f} us/event process_batch, "
        f"+{best_flush / n * 1e6:.2f} us/event flushing state "
        f"({engine.key_count(0)} keys in state)"
    )


def _changelog_entries(args: argparse.Namespace) -> None:
    rules = load_rules()
    base = transactions(args.keys, args.keys, ooo=0.0)
    print("entries  engine   whole us  sliced us  whole B  sliced B")
    for entries in (int(n) for n in args.changelog_entries.split(",")):
        engines = [(FraudFeatureEngine(), PatternEngine(rules)) for _ in range(2)]
        for fraud, patterns in engines:
            fraud.assign(0, changelog=True)
            patterns.assign(0, changelog=True)
            for r in range(entries):
                batch = [
                    msgspec.structs.replace(
                        tx, event_id=f"e{r}-{i}", card_id=f"c{i}", event_time=T0 + r * 10_000 + i
                    )
                    for i, tx in enumerate(base)
                ]
                rows = fraud.process_batch(0, batch, {}).rows
                patterns.process_batch(0, batch, rows, {})
                fraud.changelog(0)
                patterns.changelog(0)
        for k, name in enumerate(("cards", "patterns")):
            whole_engine, sliced_engine = engines[0][k], engines[1][k]
            best = {"whole": float("inf"), "sliced": float("inf")}
            size = {"whole": 0, "sliced": 0}
            for _ in range(args.repeat):
                for mode, engine in (("whole", whole_engine), ("sliced", sliced_engine)):
                    part = engine._partition(0)
                    part.touched.update(part.keys)
                    for st in part.keys.values():  # as if each card had a new newest entry
                        if st.low != NO_TIME:
                            st.low = engine._entry_times(st)[-1]
                    t0 = time.process_time()
                    if mode == "whole":
                        records = [
                            (key, engine.serialize(0, key)) for key in engine.drain_touched(0)
                        ]
                    else:
                        records = engine.changelog(0)
                    best[mode] = min(best[mode], time.process_time() - t0)
                    size[mode] = sum(len(key) + len(value or b"") for key, value in records)
            n = args.keys
            print(
                f"{entries:7d}  {name:8s} {best['whole'] / n * 1e6:8.2f} "
                f"{best['sliced'] / n * 1e6:10.2f} {size['whole'] // n:8d} {size['sliced'] // n:9d}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500, help="events per process_batch")
    parser.add_argument("--flush-every", type=int, default=30_000, help="events per flush")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gc-freeze", action="store_true")
    parser.add_argument("--changelog-entries", help="e.g. 3,11,41: the changelog cost per card")
    args = parser.parse_args()
    if args.changelog_entries:
        _changelog_entries(args)
        return

    profiles = {
        f"u{i}": UserProfile(
            user_id=f"u{i}",
            home_lat=48.5,
            home_lon=2.3,
            account_age_days=i % 3000,
            segment="retail",
            updated_at=0,
        )
        for i in range(0, args.keys, 2)  # half the users have a profile
    }

    def fraud_engine() -> FraudFeatureEngine:
        engine = FraudFeatureEngine()
        engine.assign(0, changelog=True)
        return engine

    _measure(
        "fraud",
        fraud_engine,
        transactions(args.events, args.keys),
        lambda engine, batch: engine.process_batch(0, batch, profiles),
        args,
    )

    events = user_events(args.events, args.keys)
    views = GlobalViews()
    for ev in events:
        if ev.event_type == "view":
            views.add_view(ev.event_time, ev.category, ev.item_id)

    def recs_engine() -> RecommendationFeatureEngine:
        engine = RecommendationFeatureEngine()
        engine.assign(0, changelog=True)
        return engine

    def recs_step(engine: RecommendationFeatureEngine, batch: Sequence[UserEvent]) -> None:
        engine.process_batch(0, batch, views)
        engine.drain_view_deltas(0)

    _measure("recommendations", recs_engine, events, recs_step, args)


if __name__ == "__main__":
    main()
