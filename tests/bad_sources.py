"""Sources that misbehave after a few good samples (used by the bad-input tests through `wirehead generate`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from wirehead_core.sources import seeded_sample

GOOD = 3


def _good(config) -> Iterator[tuple]:
    for i in range(GOOD):
        yield seeded_sample(1000 + i, config.fields)


def wrong_arity(config) -> Iterator[tuple]:
    yield from _good(config)
    yield (np.zeros((8, 8, 8), np.float32),)


def not_an_array(config) -> Iterator[tuple]:
    yield from _good(config)
    yield (np.zeros((8, 8, 8), np.float32), "label")


def dtype_change(config) -> Iterator[tuple]:
    yield from _good(config)
    yield (np.zeros((8, 8, 8), np.float64), np.zeros((8, 8, 8), np.uint8))


def shape_change(config) -> Iterator[tuple]:
    yield from _good(config)
    yield (np.zeros((8, 8, 9), np.float32), np.zeros((8, 8, 8), np.uint8))


def none_value(config) -> Iterator[tuple]:
    yield from _good(config)
    yield None


def raises(config) -> Iterator[tuple]:
    yield from _good(config)
    raise RuntimeError("scanner exploded")


def nan_values(config) -> Iterator[tuple]:
    yield from _good(config)
    yield (np.full((8, 8, 8), np.nan, np.float32), np.zeros((8, 8, 8), np.uint8))


def slow_setup(config, marker: str) -> Iterator[tuple]:
    """Takes long to set up (a big import on a busy node); `marker` appears once set-up has begun."""
    import pathlib
    import time

    pathlib.Path(marker).write_text("setting up")
    time.sleep(8)
    return _good(config)
