"""Distribution shift of the model's inputs and score against the training reference.

The reference of every input feature and of the score travels in the model artifact's manifest
(``models.artifacts.Reference``: bin edges at the training deciles, the share of training
values per bin, the share of nulls). Live values are binned with the same edges over a sliding
window of time slots, and compared with two statistics:

- PSI, the population stability index: ``sum((a - e) * ln(a / e))`` over the bins (shares
  floored at ``EPSILON``); the usual reading is < 0.1 stable, 0.1-0.2 moderate, > 0.2 shifted;
- the Jensen-Shannon divergence (base 2, in [0, 1]): symmetric and bounded, so a bin that is
  empty on one side does not blow it up as it does PSI.

Nulls are compared separately (their share against the reference's ``missing``), as the
reference's proportions are over the non-null values.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

EPSILON = 1e-4


class ReferenceLike(Protocol):
    edges: list[float]
    proportions: list[float]
    missing: float


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPSILON)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p, q = p / max(p.sum(), 1e-12), q / max(q.sum(), 1e-12)
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


class DriftWindow:
    """Bin counts of named columns over the last ``window_s`` seconds, in ``slots`` slots.

    ``add`` bins a whole batch per column with numpy (searchsorted + bincount); the window
    moves by dropping whole slots, so nothing is kept per record.
    """

    def __init__(
        self,
        names: Sequence[str],
        references: Mapping[str, ReferenceLike],
        *,
        window_s: float,
        slots: int = 30,
    ) -> None:
        self.names = [n for n in names if n in references]
        self._columns = [list(names).index(n) for n in self.names]
        self._edges = [np.asarray(references[n].edges, dtype=np.float64) for n in self.names]
        self._expected = [np.asarray(references[n].proportions) for n in self.names]
        self._expected_missing = [references[n].missing for n in self.names]
        self._slot_s = window_s / slots
        self._slots = slots
        # slot number -> (rows, nulls per column, bin counts per column)
        self._window: deque[tuple[int, list[int], list[int], list[np.ndarray]]] = deque()

    def add(self, at: float, rows: np.ndarray) -> None:
        """``rows``: float [n, len(names)] in the ``names`` order given, NaN for null."""
        if rows.shape[0] == 0:
            return
        slot = int(at // self._slot_s)
        if not self._window or self._window[-1][0] != slot:
            empty = [np.zeros(e.size + 1, dtype=np.int64) for e in self._edges]
            self._window.append((slot, [0], [0] * len(self.names), empty))
        _, count, nulls, bins = self._window[-1]
        count[0] += rows.shape[0]
        for i, (column, edges) in enumerate(zip(self._columns, self._edges, strict=True)):
            values = rows[:, column]
            present = values[~np.isnan(values)]
            nulls[i] += values.size - present.size
            if present.size:
                index = np.searchsorted(edges, present, side="right")
                bins[i] += np.bincount(index, minlength=edges.size + 1)
        self._trim(at)

    def _trim(self, now: float) -> None:
        oldest = int(now // self._slot_s) - self._slots + 1
        while self._window and self._window[0][0] < oldest:
            self._window.popleft()

    def count(self, now: float) -> int:
        self._trim(now)
        return sum(rows[0] for _, rows, _, _ in self._window)

    def statistics(self, now: float) -> dict[str, tuple[float, float, float]]:
        """Per column: (PSI, Jensen-Shannon divergence, null share minus the reference's)."""
        self._trim(now)
        if not self._window:
            return {}
        total = sum(rows[0] for _, rows, _, _ in self._window)
        out = {}
        for i, name in enumerate(self.names):
            counts = sum(bins[i] for _, _, _, bins in self._window)
            nulls = sum(n[i] for _, _, n, _ in self._window)
            present = counts.sum()
            if present == 0:
                continue
            actual = counts / present
            expected = self._expected[i]
            out[name] = (
                psi(expected, actual),
                js_divergence(expected, actual),
                nulls / total - self._expected_missing[i],
            )
        return out
