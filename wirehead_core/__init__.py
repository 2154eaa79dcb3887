"""wirehead: synthetic data generated on the fly, cached in MongoDB, read by PyTorch while training runs.

Heavy parts (torch, pymongo) are imported on first use, so ``import wirehead_core`` and the CLI start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from wirehead_core.config import Config, load_config
from wirehead_core.errors import (
    ConfigError,
    CorruptSampleError,
    LeaseLostError,
    SampleError,
    ServerError,
    StoreError,
    StoreUnavailableError,
    WireheadError,
)

_LAZY = {
    "Generator": "wirehead_core.generator",
    "GeneratorStats": "wirehead_core.generator",
    "SourceError": "wirehead_core.generator",
    "SwapManager": "wirehead_core.manager",
    "WireheadDataset": "wirehead_core.dataset",
    "LocalServer": "wirehead_core.server",
    "collect_status": "wirehead_core.status",
    "CacheStatus": "wirehead_core.status",
    "encode_sample": "wirehead_core.codec",
    "decode_sample": "wirehead_core.codec",
    "BrainGenerator": "wirehead_core.brain",
    "MeshNet": "wirehead_core.models",
    "UNet3D": "wirehead_core.models",
    "build_model": "wirehead_core.models",
    "dice_per_class": "wirehead_core.metrics",
    "DiceCELoss": "wirehead_core.metrics",
    "load_icbm152": "wirehead_core.evaldata",
    "train": "wirehead_core.train",
    "Tracer": "wirehead_core.tracer",
}

__all__ = [
    "Config",
    "load_config",
    "WireheadError",
    "ConfigError",
    "SampleError",
    "CorruptSampleError",
    "StoreError",
    "StoreUnavailableError",
    "LeaseLostError",
    "ServerError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wirehead_core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
