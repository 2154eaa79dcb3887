"""Verifiable sample sources for tests, the demo, benchmarks and the chaos harness.

`seeded` yields samples whose every byte is a deterministic function of a 64-bit seed written into the first eight
bytes of the first field, so any reader can check a sample it received (`verify_seeded`) without shared state.
An optional per-sample delay emulates an expensive generator (GPU or remote synthesis); anything measured with it is
labelled as emulated.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from typing import Any, Optional

import numpy as np

from wirehead_core.config import Config, FieldSpec
from wirehead_core.errors import CorruptSampleError

__all__ = ["seeded", "seeded_sample", "verify_seeded", "sample_seed", "repeat"]

_DEFAULT_SHAPE = (16, 16, 16)


def _field_layout(fields: Sequence[FieldSpec], shape: Optional[Sequence[int]]) -> list[tuple[str, tuple[int, ...]]]:
    out = []
    for i, spec in enumerate(fields):
        dtype = spec.dtype or ("float32" if i == 0 else "uint8")
        dims = tuple(spec.shape) if spec.shape is not None else tuple(shape or _DEFAULT_SHAPE)
        out.append((dtype, dims))
    return out


def seeded_sample(seed: int, fields: Sequence[FieldSpec], shape: Optional[Sequence[int]] = None) -> tuple:
    """The sample for `seed`: random bytes of each field's dtype and shape, seed stored in the first 8 bytes."""
    rng = np.random.default_rng(seed)
    arrays = []
    for dtype, dims in _field_layout(fields, shape):
        nbytes = int(np.prod(dims, dtype=np.int64)) * np.dtype(dtype if dtype != "bfloat16" else "int16").itemsize
        raw = rng.integers(0, 256, size=nbytes, dtype=np.uint8)
        if dtype.startswith("float") or dtype.startswith("complex"):
            # Random bytes would include NaN payloads; draw real numbers instead, still deterministic.
            arr = rng.standard_normal(size=dims).astype(dtype)
        elif dtype == "bool":
            arr = (raw.reshape(dims) & 1).astype(bool)
        else:
            arr = raw.view(dtype).reshape(dims)
        arrays.append(np.ascontiguousarray(arr))
    first = arrays[0].reshape(-1).view(np.uint8)
    if first.size < 8:
        raise ValueError("the first field must hold at least 8 bytes to carry the seed")
    first[:8] = np.frombuffer(np.uint64(seed).tobytes(), dtype=np.uint8)
    return tuple(arrays)


def _bytes_of(value: Any) -> np.ndarray:
    if hasattr(value, "numpy"):
        value = value.detach().cpu().contiguous().numpy()
    return np.ascontiguousarray(value).reshape(-1).view(np.uint8)


def sample_seed(sample: Sequence[Any]) -> int:
    """The seed stored in a sample's first field."""
    return int(np.frombuffer(_bytes_of(sample[0])[:8].tobytes(), dtype=np.uint64)[0])


def verify_seeded(sample: Sequence[Any], fields: Sequence[FieldSpec], shape: Optional[Sequence[int]] = None) -> int:
    """Check every byte of a sample produced by `seeded`; returns its seed.

    Raises:
        CorruptSampleError: any byte, dtype or shape differs from what the seed determines.
    """
    seed = sample_seed(sample)
    expected = seeded_sample(seed, fields, shape)
    if len(sample) != len(expected):
        raise CorruptSampleError(f"sample has {len(sample)} fields, expected {len(expected)}")
    for got, want, spec in zip(sample, expected, fields):
        if tuple(got.shape) != want.shape or not np.array_equal(_bytes_of(got), _bytes_of(want)):
            raise CorruptSampleError(f"field {spec.name!r} of sample with seed {seed} differs from its seed's bytes")
    return seed


def seeded(config: Config, seed: Optional[int] = None, *, delay_s: float = 0.0,
           shape: Optional[Sequence[int]] = None, count: Optional[int] = None) -> Iterator[tuple]:
    """Yield verifiable samples for `config.fields`.

    Args:
        config: the configuration (its fields' declared dtypes and shapes are honoured).
        seed: first seed; consecutive samples use consecutive seeds. Random when omitted.
        delay_s: sleep this long per sample (an emulated generation cost).
        shape: shape of fields without a declared shape.
        count: stop after this many samples (infinite when omitted).
    """
    base = int.from_bytes(os.urandom(5), "little") << 8 if seed is None else int(seed)
    i = 0
    while count is None or i < count:
        if delay_s:
            time.sleep(delay_s)
        yield seeded_sample(base + i, config.fields, shape)
        i += 1


def repeat(config: Config, seed: int = 0, *, count: Optional[int] = None,
           shape: Optional[Sequence[int]] = None) -> Iterator[tuple]:
    """Yield the same seeded sample `count` times (infinite when omitted): a source that costs nothing, for
    measuring the data plane alone."""
    sample = seeded_sample(seed, config.fields, shape)
    i = 0
    while count is None or i < count:
        yield sample
        i += 1
