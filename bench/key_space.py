"""Transactions over a fixed key space: every card pays once in a first pass, then at random.

The memory scenario asks whether a consumer's state is bounded by its windows and horizons.
The realistic generator cannot show that in 10 minutes: its long tail of rarely active users
keeps bringing new cards for days of event time, so RSS keeps growing with the card count.
Here the count is exact: the first ``cards`` transactions are each card once (a random
permutation), every later one is a card drawn uniformly, so from the end of the first pass
state holds exactly ``cards`` cards, and once the 24 h windows are full (``span_ms`` of event
time spread evenly over the ``count`` records) RSS should stop growing.

One user per card (``u`` + the card's number), no profiles (the profile features are null),
merchants of the generator's categories, amounts log-normal, positions near a per-card home
with an occasional far one. Event times increase with the record number: nothing is late.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from contracts.codec import encode
from contracts.events import Transaction
from producers.records import Record, Stream
from producers.world import CATEGORY_NAMES, id_format

MERCHANTS = 3_000
BATCH = 5_000
FAR_SHARE = 0.05  # transactions far from the card's home (travel, card-not-present)
ONLINE_SHARE = 0.3


def key_space_batches(
    cards: int, count: int, *, span_ms: int, start_ms: int, seed: int = 0
) -> Iterator[list[Record]]:
    """``count`` transaction records over ``cards`` cards, in batches of ``BATCH``."""
    if cards < 1 or count < 1 or span_ms < 1:
        raise ValueError(f"cards, count and span_ms must be positive: {cards}, {count}, {span_ms}")
    rng = np.random.default_rng(seed)
    card_ids = id_format("c", cards)
    user_ids = id_format("u", cards)
    merchant_ids = id_format("m", MERCHANTS)
    merchant_category = rng.integers(0, len(CATEGORY_NAMES), size=MERCHANTS)
    home_lat = rng.uniform(25.0, 49.0, size=cards)
    home_lon = rng.uniform(-124.0, -67.0, size=cards)
    first_pass = rng.permutation(cards)
    for start in range(0, count, BATCH):
        n = min(BATCH, count - start)
        seqs = np.arange(start, start + n)
        card = np.where(
            seqs < cards, first_pass[np.minimum(seqs, cards - 1)], rng.integers(0, cards, size=n)
        )
        merchant = rng.integers(0, MERCHANTS, size=n)
        amount = np.round(np.minimum(rng.lognormal(np.log(40.0), 1.0, size=n), 20_000.0), 2)
        far = rng.random(n) < FAR_SHARE
        lat = np.where(far, rng.uniform(-60.0, 70.0, n), home_lat[card] + rng.normal(0, 0.1, n))
        lon = np.where(far, rng.uniform(-179.0, 179.0, n), home_lon[card] + rng.normal(0, 0.1, n))
        online = rng.random(n) < ONLINE_SHARE
        times = start_ms + seqs * span_ms // count
        batch = []
        for i in range(n):
            c, m, t = int(card[i]), int(merchant[i]), int(times[i])
            tx = Transaction(
                event_id=f"ks-{seed}-{start + i}",
                card_id=card_ids[c],
                user_id=user_ids[c],
                merchant_id=merchant_ids[m],
                merchant_category=CATEGORY_NAMES[merchant_category[m]],
                amount=max(float(amount[i]), 0.01),
                currency="USD",
                lat=float(np.clip(lat[i], -90.0, 90.0)),
                lon=float(np.clip(lon[i], -180.0, 180.0)),
                event_time=t,
                channel="online" if online[i] else "pos",
            )
            batch.append(
                Record(start + i, Stream.TRANSACTIONS, tx.card_id, encode(tx), t, None, None)
            )
        yield batch
