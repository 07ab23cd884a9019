"""Platt scaling: p = sigmoid(a * logit + b), fitted by Newton's method on held-out rows.

The classifier is trained with a class-weighted loss, so its raw probabilities are far too high;
Platt scaling on the *unweighted* validation split maps them back to observed fraud rates. The
targets are Platt's smoothed ones ((N+ + 1) / (N+ + 2) for positives, 1 / (N- + 2) for negatives),
which keeps the fit finite when the validation split is perfectly separable.
"""

from __future__ import annotations

import numpy as np


def fit_platt(
    logits: np.ndarray, labels: np.ndarray, max_iter: int = 100, tol: float = 1e-10
) -> tuple[float, float]:
    """``(a, b)`` minimizing the cross-entropy of ``sigmoid(a * logits + b)`` against ``labels``."""
    z = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel() > 0
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("Platt scaling needs both classes in the calibration rows")
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    a, b = 1.0, float(np.log((n_pos + 1.0) / (n_neg + 1.0)))
    loss = _loss(z, t, a, b)
    for _ in range(max_iter):
        p = _sigmoid(a * z + b)
        g = p - t  # d loss / d (a z + b), per row
        grad = np.array([np.dot(g, z), g.sum()])
        w = p * (1.0 - p)
        hess = np.array([[np.dot(w, z * z), np.dot(w, z)], [np.dot(w, z), w.sum()]])
        hess += 1e-12 * np.eye(2) * max(1.0, hess.trace())
        step = np.linalg.solve(hess, grad)
        # Backtracking: Newton steps on a nearly separable split can overshoot.
        scale = 1.0
        while scale > 1e-8:
            a_new, b_new = a - scale * step[0], b - scale * step[1]
            new_loss = _loss(z, t, a_new, b_new)
            if new_loss <= loss:
                break
            scale /= 2.0
        else:
            break
        done = loss - new_loss < tol * max(1.0, abs(loss))
        a, b, loss = a_new, b_new, new_loss
        if done:
            break
    return float(a), float(b)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _loss(z: np.ndarray, t: np.ndarray, a: float, b: float) -> float:
    s = a * z + b
    # log(1 + e^s) - t s, computed stably
    return float(np.sum(np.logaddexp(0.0, s) - t * s))
