"""Throughput with an uncertainty: samples per second as N / T, with a batch-means standard error.

The original wirehead figures averaged per-step rates (the mean of ``1 / step_time``), which overstates the rate
whenever step times vary (Jensen's inequality: a few fast steps weigh as much as the slow ones that take most of
the time; ×2.9 on its disk baseline). Here the rate is the count over the time it took, and its uncertainty comes
from splitting the same window into equal sub-windows: their rates average exactly to N / T, and their spread gives
the standard error.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

__all__ = ["Rate", "rate_from_counts"]


@dataclass(frozen=True)
class Rate:
    """A measured rate.

    Attributes:
        per_s: count / seconds over the whole window (N / T).
        stderr: standard error from `windows` equal sub-windows (0 with fewer than 2).
        count: N, items counted inside the window.
        seconds: T, the window's length.
        windows: sub-windows used for the standard error.
    """

    per_s: float
    stderr: float
    count: float
    seconds: float
    windows: int

    def as_dict(self) -> dict[str, float]:
        """Plain dict for JSON output."""
        return {"per_s": self.per_s, "stderr": self.stderr, "count": self.count, "seconds": self.seconds,
                "windows": self.windows}


def _count_at(times: Sequence[float], cumulative: Sequence[float], t: float) -> float:
    """The cumulative count at time t: that of the last observation at or before t (0 before the first)."""
    i = bisect.bisect_right(times, t)
    return float(cumulative[i - 1]) if i else 0.0


def rate_from_counts(times: Sequence[float], cumulative: Sequence[float], start: Optional[float] = None,
                     end: Optional[float] = None, windows: int = 10) -> Rate:
    """Rate of a cumulative counter observed at `times` over ``[start, end]`` (default: first to last time).

    Args:
        times: ascending observation times (seconds).
        cumulative: the counter's value at each time (non-decreasing).
        start, end: the window; the count is the counter's increase over it.
        windows: equal sub-windows for the standard error.

    Raises:
        ValueError: mismatched or unsorted inputs, or an empty window.
    """
    if len(times) != len(cumulative):
        raise ValueError(f"rate_from_counts: {len(times)} times but {len(cumulative)} counts")
    if not times:
        raise ValueError("rate_from_counts: no observations")
    if any(b < a for a, b in zip(times, times[1:])):
        raise ValueError("rate_from_counts: times must be ascending")
    if windows < 1:
        raise ValueError(f"rate_from_counts: windows must be >= 1, got {windows}")
    t0 = times[0] if start is None else start
    t1 = times[-1] if end is None else end
    if not t1 > t0:
        raise ValueError(f"rate_from_counts: empty window [{t0}, {t1}]")
    total = _count_at(times, cumulative, t1) - _count_at(times, cumulative, t0)
    span = t1 - t0
    width = span / windows
    edges = [_count_at(times, cumulative, t0 + k * width) for k in range(windows)] + [
        _count_at(times, cumulative, t1)]
    rates = [(b - a) / width for a, b in zip(edges, edges[1:])]
    stderr = 0.0
    if windows >= 2:
        mean = sum(rates) / windows
        stderr = math.sqrt(sum((r - mean) ** 2 for r in rates) / (windows - 1) / windows)
    return Rate(per_s=total / span, stderr=stderr, count=total, seconds=span, windows=windows)
