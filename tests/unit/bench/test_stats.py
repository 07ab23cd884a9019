"""Medians, ranges and paired ratios: the numbers every bench table shows."""

from __future__ import annotations

import math

import pytest

from bench.stats import Summary, paired_ratios, rate, ratio_summary, summarize


def test_summary_of_odd_and_even_counts() -> None:
    assert summarize([3.0, 1.0, 2.0]) == Summary(3, 2.0, 1.0, 3.0)
    assert summarize([4, 1, 3, 2]) == Summary(4, 2.5, 1.0, 4.0)


def test_spread_is_the_range_relative_to_the_median() -> None:
    assert summarize([90.0, 100.0, 110.0]).spread == pytest.approx(0.2)
    assert summarize([5.0]).spread == 0.0
    assert summarize([0.0, 0.0]).spread == math.inf


@pytest.mark.parametrize(
    ("values", "message"),
    [([], "no samples"), ([1.0, math.nan], "finite"), ([math.inf], "finite")],
)
def test_summarize_refuses_what_it_cannot_summarize(values: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        summarize(values)


def test_ratios_pair_samples_of_the_same_round() -> None:
    numerators = [(2, 30.0), (0, 10.0), (1, 40.0)]
    denominators = [(0, 100.0), (1, 200.0), (2, 100.0)]
    assert paired_ratios(numerators, denominators) == [0.1, 0.2, 0.3]


def test_rounds_without_a_partner_are_left_out() -> None:
    assert paired_ratios([(0, 1.0), (1, 2.0)], [(1, 4.0)]) == [0.5]
    assert ratio_summary([(0, 1.0)], [(1, 4.0)]) is None
    assert ratio_summary([(0, 1.0), (1, 3.0)], [(0, 2.0), (1, 2.0)]) == Summary(2, 1.0, 0.5, 1.5)


def test_a_non_positive_denominator_is_a_measurement_bug() -> None:
    with pytest.raises(ValueError, match="positive"):
        paired_ratios([(0, 1.0)], [(0, 0.0)])


def test_rate() -> None:
    assert rate(30_000, 2.0) == 15_000.0
    with pytest.raises(ValueError, match="duration"):
        rate(1, 0.0)
