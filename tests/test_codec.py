"""The byte format: every shared numpy/torch dtype round-trips bit-exactly; bad samples fail clearly."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from wirehead_core import CorruptSampleError, SampleError
from wirehead_core.codec import FieldMeta, decode_sample, encode_sample, verify_payload
from wirehead_core.config import FieldSpec

ONE = [FieldSpec("x")]
TORCH_DTYPES = [torch.bool, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.uint16,
                torch.uint32, torch.uint64, torch.float16, torch.bfloat16, torch.float32, torch.float64,
                torch.complex64, torch.complex128]
NUMPY_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                "float32", "float64", "complex64", "complex128"]


def _bits(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def _random_tensor(dtype: torch.dtype, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    raw = torch.randint(0, 256, (int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size(),),
                        dtype=torch.uint8, generator=gen)
    if dtype == torch.bool:
        return (raw % 2).bool().reshape(shape)
    return raw.view(dtype).reshape(shape)


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1,), (5, 7, 3), (257,)])
def test_torch_tensors_round_trip_bit_exactly(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(hash((str(dtype), shape)) % 2**31)
    tensor = _random_tensor(dtype, shape, gen)  # random bits: NaN payloads and negative zeros included
    enc = encode_sample((tensor,), ONE, chunk_bytes=1024)
    (out,) = decode_sample(enc.fields, enc.chunks)
    assert out.dtype == dtype and tuple(out.shape) == shape
    assert _bits(out) == _bits(tensor)


@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
def test_numpy_arrays_round_trip_bit_exactly_as_numpy_and_torch(dtype: str) -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, size=4 * 5 * 6 * np.dtype(dtype).itemsize, dtype=np.uint8)
    arr = (arr & 1).astype(bool).reshape(4, 5, 6 * np.dtype(dtype).itemsize)[:, :, :6] if dtype == "bool" \
        else arr.view(dtype).reshape(4, 5, 6)
    enc = encode_sample((arr,), ONE, chunk_bytes=1024)
    (as_np,) = decode_sample(enc.fields, enc.chunks, as_torch=False)
    assert as_np.dtype == arr.dtype and as_np.tobytes() == arr.tobytes()
    (as_t,) = decode_sample(enc.fields, enc.chunks)
    assert as_t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() == arr.tobytes()


def test_non_contiguous_and_multi_field_samples_split_across_chunks() -> None:
    base = np.arange(10 * 20, dtype=np.int32).reshape(10, 20)
    view = base[:, ::3]  # not contiguous
    label = np.arange(50, dtype=np.uint8)
    fields = [FieldSpec("a"), FieldSpec("b")]
    enc = encode_sample((view, torch.from_numpy(label)), fields, chunk_bytes=1024)
    assert len(enc.chunks) == -(-(view.nbytes + label.nbytes) // 1024)
    assert all(len(c) <= 1024 for c in enc.chunks)
    a, b = decode_sample(enc.fields, enc.chunks, as_torch=False)
    assert np.array_equal(a, view) and np.array_equal(b, label)


def test_large_sample_of_200_mb_round_trips() -> None:
    big = np.random.default_rng(0).integers(0, 255, size=200 * 1024 * 1024, dtype=np.uint8)
    enc = encode_sample((big,), ONE, chunk_bytes=15 * 1024 * 1024)
    assert len(enc.chunks) == 14
    (out,) = decode_sample(enc.fields, enc.chunks, as_torch=False)
    assert np.array_equal(out, big)


def test_checksum_mismatch_is_detected() -> None:
    enc = encode_sample((np.arange(1000, dtype=np.float64),), ONE, chunk_bytes=1024)
    chunks = list(enc.chunks)
    flipped = bytearray(chunks[3])
    flipped[10] ^= 0x01
    chunks[3] = bytes(flipped)
    with pytest.raises(CorruptSampleError, match="checksum"):
        decode_sample(enc.fields, chunks)
    with pytest.raises(CorruptSampleError, match="checksum"):
        verify_payload(enc.fields, chunks)


def test_missing_chunk_is_detected() -> None:
    enc = encode_sample((np.arange(1000, dtype=np.float64),), ONE, chunk_bytes=1024)
    with pytest.raises(CorruptSampleError, match="bytes"):
        decode_sample(enc.fields, enc.chunks[:-1])


def test_unknown_stored_dtype_is_corrupt() -> None:
    with pytest.raises(CorruptSampleError, match="dtype"):
        decode_sample([FieldMeta("float8", (1,), 1, 0)], [b"\x00"])


@pytest.mark.parametrize("sample, message", [
    ((np.zeros(3),), "must have 2 fields"),
    ((np.zeros(3), np.zeros(3), np.zeros(3)), "must have 2 fields"),
    (np.zeros(3), "must be a tuple"),
    ((np.zeros(3), [1, 2, 3]), "field 'b': expected a numpy array or torch tensor, got list"),
    ((np.zeros(3), None), "field 'b': got None"),
    ((np.zeros(3), np.array(["x"])), "field 'b': dtype <U1 is not supported"),
    ((np.zeros(3, dtype=">f8"), np.zeros(3)), "field 'a': dtype >f8 is not supported"),
])
def test_malformed_samples_raise_one_clear_error(sample: object, message: str) -> None:
    with pytest.raises(SampleError) as info:
        encode_sample(sample, [FieldSpec("a"), FieldSpec("b")], chunk_bytes=1024)
    assert message in str(info.value)


def test_declared_dtype_and_shape_are_enforced() -> None:
    fields = [FieldSpec("img", dtype="float32", shape=[2, 2])]
    encode_sample((np.zeros((2, 2), np.float32),), fields, 1024)
    with pytest.raises(SampleError, match="dtype float64 differs from the declared float32"):
        encode_sample((np.zeros((2, 2)),), fields, 1024)
    with pytest.raises(SampleError, match=r"shape \[2, 3\] differs from the declared \[2, 2\]"):
        encode_sample((np.zeros((2, 3), np.float32),), fields, 1024)


def test_nan_policy_and_size_limit() -> None:
    bad = (np.array([1.0, np.nan]),)
    encode_sample(bad, ONE, 1024, nan_policy="allow")
    with pytest.raises(SampleError, match="NaN or Inf"):
        encode_sample(bad, ONE, 1024, nan_policy="reject")
    with pytest.raises(SampleError, match="NaN or Inf"):
        encode_sample((torch.tensor([float("inf")], dtype=torch.bfloat16),), ONE, 1024, nan_policy="reject")
    with pytest.raises(SampleError, match="exceeds generator.max_sample_bytes"):
        encode_sample((np.zeros(100, np.uint8),), ONE, 1024, max_sample_bytes=99)


def test_stored_checksums_are_zlibs_crc32_of_each_fields_bytes() -> None:
    # the byte format does not depend on which CRC-32 implementation computed it (ISA-L's or zlib's)
    image = np.random.default_rng(3).standard_normal((33, 17)).astype(np.float32)
    label = np.arange(1001, dtype=np.int64)[::2]  # not contiguous
    encoded = encode_sample((image, label), [FieldSpec("image"), FieldSpec("label")], chunk_bytes=1000)
    assert [m.crc32 for m in encoded.fields] == [zlib.crc32(image.tobytes()), zlib.crc32(label.tobytes())]
