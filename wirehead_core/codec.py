"""Lossless byte format of a sample. Pure: no I/O, no pickle.

A sample is a tuple of arrays (numpy arrays or torch tensors), one per configured field. Each field is stored as its
raw C-order bytes plus dtype, shape, byte count and a CRC-32; the fields' bytes are concatenated and cut into chunks
no larger than ``chunk_bytes`` (below the BSON document limit). Decoding rebuilds each array bit-exactly from the
chunks and checks every checksum.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from wirehead_core.config import FieldSpec
from wirehead_core.errors import CorruptSampleError, SampleError

try:  # ISA-L's CRC-32 is zlib's polynomial and values, with SIMD: about 6 x zlib's speed on our machines
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - a platform without an isal wheel keeps zlib's
    from zlib import crc32 as _crc32

__all__ = ["FieldMeta", "EncodedSample", "encode_sample", "decode_sample", "verify_payload", "field_meta_from_doc"]

_NUMPY_DTYPES = {
    "bool": np.bool_, "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "float16": np.float16, "float32": np.float32, "float64": np.float64,
    "complex64": np.complex64, "complex128": np.complex128,
}
#: bfloat16 has no numpy dtype: its bytes travel as int16 and are reinterpreted by torch.
_BFLOAT16 = "bfloat16"


@dataclasses.dataclass(frozen=True)
class FieldMeta:
    """How one field's bytes are laid out inside a stored sample."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    crc32: int

    def to_doc(self) -> dict[str, Any]:
        """The BSON-ready form stored in the commit record."""
        return {"dtype": self.dtype, "shape": list(self.shape), "nbytes": self.nbytes, "crc32": self.crc32}


def field_meta_from_doc(doc: dict[str, Any]) -> FieldMeta:
    """Inverse of `FieldMeta.to_doc`."""
    return FieldMeta(str(doc["dtype"]), tuple(int(d) for d in doc["shape"]), int(doc["nbytes"]), int(doc["crc32"]))


@dataclasses.dataclass(frozen=True)
class EncodedSample:
    """A sample turned into chunk payloads plus the metadata needed to rebuild it."""

    fields: tuple[FieldMeta, ...]
    chunks: tuple[bytes, ...]

    @property
    def nbytes(self) -> int:
        """Total payload bytes."""
        return sum(f.nbytes for f in self.fields)


def _as_numpy(value: Any, name: str) -> tuple[np.ndarray, str]:
    """Return a C-contiguous numpy view of `value` and its dtype name, without copying when possible."""
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            torch = None
        if torch is not None and isinstance(value, torch.Tensor):
            tensor = value.detach()
            if tensor.device.type != "cpu":
                tensor = tensor.cpu()
            if tensor.dtype == torch.bfloat16:
                return _c_order(tensor.contiguous().view(torch.int16).numpy()), _BFLOAT16
            try:
                arr = tensor.contiguous().numpy()
            except TypeError as exc:
                raise SampleError(f"field {name!r}: torch dtype {tensor.dtype} is not supported") from exc
        else:
            raise SampleError(
                f"field {name!r}: expected a numpy array or torch tensor, got {type(value).__name__}")
    dtype = arr.dtype.name
    if dtype not in _NUMPY_DTYPES or arr.dtype.byteorder == ">":
        raise SampleError(f"field {name!r}: dtype {arr.dtype} is not supported "
                          f"(supported: {', '.join(list(_NUMPY_DTYPES) + [_BFLOAT16])})")
    return _c_order(arr), dtype


def _c_order(arr: np.ndarray) -> np.ndarray:
    """`arr` itself when C-contiguous, else a C-ordered copy (0-d arrays stay 0-d, unlike ascontiguousarray)."""
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _check_values(arr: np.ndarray, name: str, dtype: str, nan_policy: str) -> None:
    if nan_policy != "reject":
        return
    if dtype == _BFLOAT16:  # bfloat16 bits are the high half of a float32
        arr = (arr.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if arr.dtype.kind in "fc":
        if not np.isfinite(arr).all():
            raise SampleError(f"field {name!r}: contains NaN or Inf and nan_policy is 'reject'")


def encode_sample(
    sample: Any,
    fields: Sequence[FieldSpec],
    chunk_bytes: int,
    *,
    nan_policy: str = "allow",
    max_sample_bytes: int = 0,
) -> EncodedSample:
    """Check a sample against the configured fields and cut its bytes into chunks.

    Args:
        sample: a tuple (or list) with one numpy array / torch tensor per field.
        fields: the configured fields; declared dtypes and shapes are enforced.
        chunk_bytes: the largest chunk payload.
        nan_policy: ``"allow"`` or ``"reject"`` NaN/Inf in floating fields.
        max_sample_bytes: reject samples whose payload exceeds this (0 = no limit).

    Raises:
        SampleError: wrong arity, a value that is not an array, a dtype or shape that differs from the declaration,
            NaN/Inf under the reject policy, or a sample over the size limit.
    """
    if not isinstance(sample, (tuple, list)):
        raise SampleError(f"a sample must be a tuple of {len(fields)} arrays "
                          f"({', '.join(f.name for f in fields)}), got {type(sample).__name__}")
    if len(sample) != len(fields):
        raise SampleError(f"a sample must have {len(fields)} fields "
                          f"({', '.join(f.name for f in fields)}), got {len(sample)}")
    arrays, metas = [], []
    for value, spec in zip(sample, fields):
        if value is None:
            raise SampleError(f"field {spec.name!r}: got None instead of an array")
        arr, dtype = _as_numpy(value, spec.name)
        if spec.dtype is not None and spec.dtype != dtype:
            raise SampleError(f"field {spec.name!r}: dtype {dtype} differs from the declared {spec.dtype}")
        if spec.shape is not None and list(arr.shape) != list(spec.shape):
            raise SampleError(f"field {spec.name!r}: shape {list(arr.shape)} differs from the declared {spec.shape}")
        _check_values(arr, spec.name, dtype, nan_policy)
        view = memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else memoryview(b"")
        arrays.append(view)
        metas.append(FieldMeta(dtype, tuple(int(d) for d in arr.shape), arr.nbytes, _crc32(view)))
    total = sum(m.nbytes for m in metas)
    if max_sample_bytes and total > max_sample_bytes:
        raise SampleError(f"sample of {total} bytes exceeds generator.max_sample_bytes = {max_sample_bytes}")
    return EncodedSample(tuple(metas), tuple(_cut(arrays, total, chunk_bytes)))


def _cut(views: list[memoryview], total: int, chunk_bytes: int) -> list[bytes]:
    """Concatenate `views` and cut into pieces of at most `chunk_bytes`; at least one (possibly empty) chunk."""
    if total == 0:
        return [b""]
    chunks: list[bytes] = []
    pending: list[memoryview] = []
    pending_len = 0
    for view in views:
        pos = 0
        while pos < len(view):
            take = min(chunk_bytes - pending_len, len(view) - pos)
            pending.append(view[pos:pos + take])
            pending_len += take
            pos += take
            if pending_len == chunk_bytes:
                chunks.append(b"".join(pending))
                pending, pending_len = [], 0
    if pending:
        chunks.append(b"".join(pending))
    return chunks


def expected_chunks(total_bytes: int, chunk_bytes: int) -> int:
    """How many chunks `encode_sample` produces for a payload of `total_bytes`."""
    return max(1, math.ceil(total_bytes / chunk_bytes))


def _assemble(fields: Sequence[FieldMeta], chunks: Sequence[bytes]) -> bytearray:
    """Join the chunks into one writable buffer and check every field's checksum."""
    total = sum(f.nbytes for f in fields)
    got = sum(len(c) for c in chunks)
    if got != total:
        raise CorruptSampleError(f"sample payload has {got} bytes, its commit record says {total}")
    buf = bytearray(total)
    pos = 0
    for chunk in chunks:
        buf[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
    whole = memoryview(buf)
    offset = 0
    for meta in fields:
        if _crc32(whole[offset:offset + meta.nbytes]) != meta.crc32:
            raise CorruptSampleError(f"checksum mismatch in a field of dtype {meta.dtype} and shape {list(meta.shape)}")
        offset += meta.nbytes
    return buf


def verify_payload(fields: Sequence[FieldMeta], chunks: Sequence[bytes]) -> None:
    """Check sizes and checksums of a stored sample without building arrays.

    Raises:
        CorruptSampleError: sizes or checksums do not match.
    """
    _assemble(fields, chunks)


def decode_sample(fields: Sequence[FieldMeta], chunks: Sequence[bytes], *, as_torch: bool = True) -> tuple:
    """Rebuild the arrays of a sample from its chunks (in order), checking sizes and checksums.

    Args:
        fields: the stored field metadata.
        chunks: the chunk payloads in chunk order.
        as_torch: return torch tensors (bfloat16 included) instead of numpy arrays.

    Raises:
        CorruptSampleError: sizes or checksums do not match.
    """
    buf = _assemble(fields, chunks)
    out = []
    offset = 0
    for meta in fields:
        out.append(_rebuild(buf, offset, meta, as_torch))
        offset += meta.nbytes
    return tuple(out)


def _rebuild(buf: bytearray, offset: int, meta: FieldMeta, as_torch: bool) -> Any:
    np_dtype = np.int16 if meta.dtype == _BFLOAT16 else _NUMPY_DTYPES.get(meta.dtype)
    if np_dtype is None:
        raise CorruptSampleError(f"unknown stored dtype {meta.dtype!r}")
    count = math.prod(meta.shape)
    arr = np.frombuffer(buf, dtype=np_dtype, count=count, offset=offset).reshape(meta.shape)
    if not as_torch:
        if meta.dtype == _BFLOAT16:
            raise CorruptSampleError("bfloat16 fields can only be decoded to torch tensors")
        return arr
    import torch

    if meta.dtype == _BFLOAT16:
        return torch.from_numpy(arr).view(torch.bfloat16)
    if meta.dtype in ("uint16", "uint32", "uint64"):
        # torch.from_numpy refuses these dtypes on some versions; go through a same-size signed view.
        signed = {"uint16": (np.int16, torch.uint16), "uint32": (np.int32, torch.uint32),
                  "uint64": (np.int64, torch.uint64)}[meta.dtype]
        return torch.from_numpy(arr.view(signed[0])).view(signed[1])
    return torch.from_numpy(arr)
