"""wirehead: synthetic data generated on the fly, cached in MongoDB, read by PyTorch while training runs."""

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
]
