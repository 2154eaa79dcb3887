"""Specification of the throughput estimator (wirehead_core.throughput): N / T with a batch-means error."""

from __future__ import annotations

import random

import pytest

from wirehead_core.throughput import rate_from_counts


def test_rate_is_count_over_time_and_a_steady_counter_has_no_spread():
    times = [float(t) for t in range(0, 101)]
    counts = [2 * t for t in times]  # 2 per second, observed every second
    rate = rate_from_counts(times, counts, windows=10)
    assert rate.per_s == pytest.approx(2.0)
    assert rate.count == 200
    assert rate.seconds == 100
    assert rate.stderr == pytest.approx(0.0)


def test_mean_of_per_step_rates_overstates_throughput_but_n_over_t_does_not():
    # Alternating fast (0.1 s) and slow (1.9 s) steps of one sample each: 1 sample/s in truth.
    times, counts, t = [0.0], [0], 0.0
    for i in range(200):
        t += 0.1 if i % 2 == 0 else 1.9
        times.append(t)
        counts.append(i + 1)
    biased = sum(1 / (b - a) for a, b in zip(times, times[1:])) / 200  # the original's estimator
    rate = rate_from_counts(times, counts)
    assert biased == pytest.approx(5.26, abs=0.01)
    assert rate.per_s == pytest.approx(1.0)


def test_stderr_reflects_a_bursty_counter_and_the_window_bounds_the_count():
    rng = random.Random(0)
    times, counts, n = [], [], 0
    for second in range(200):
        n += rng.choice([0, 0, 0, 4])  # bursts
        times.append(float(second))
        counts.append(n)
    rate = rate_from_counts(times, counts, windows=10)
    assert rate.stderr > 0
    assert rate.per_s == pytest.approx((counts[-1] - counts[0]) / 199)
    inner = rate_from_counts(times, counts, start=50.0, end=150.0)
    assert inner.count == counts[150] - counts[50]


@pytest.mark.parametrize("times, counts, message", [
    ([0.0, 1.0], [0], "2 times but 1 counts"),
    ([], [], "no observations"),
    ([1.0, 0.0], [0, 1], "ascending"),
    ([1.0, 1.0], [0, 1], "empty window"),
])
def test_bad_input_is_refused_with_a_clear_message(times, counts, message):
    with pytest.raises(ValueError, match=message):
        rate_from_counts(times, counts)
