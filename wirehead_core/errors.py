"""The exception hierarchy of wirehead: every error the library raises on purpose derives from `WireheadError`."""

from __future__ import annotations

__all__ = [
    "WireheadError",
    "ConfigError",
    "SampleError",
    "CorruptSampleError",
    "StoreError",
    "StoreUnavailableError",
    "LeaseLostError",
    "ServerError",
]


class WireheadError(Exception):
    """Base class of every error raised by wirehead."""


class ConfigError(WireheadError, ValueError):
    """A configuration file or value is invalid; the message names the key."""


class SampleError(WireheadError, ValueError):
    """A sample produced by a source does not match the configured fields (arity, type, dtype, shape, size)."""


class CorruptSampleError(WireheadError):
    """Stored bytes of a committed sample do not match their checksum or their chunks are incomplete."""


class StoreError(WireheadError):
    """The database refused an operation or holds state wirehead cannot interpret."""


class StoreUnavailableError(StoreError):
    """The database server could not be reached within the configured time."""


class LeaseLostError(WireheadError):
    """The swap manager no longer holds the swap lock (another manager took over after the lease expired)."""


class ServerError(WireheadError):
    """A local database server could not be started or stopped."""
