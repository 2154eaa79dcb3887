"""Typed, validated configuration loaded once from YAML and passed down.

Every section is a frozen dataclass. `parse_section` turns plain data (from YAML) into a dataclass, checking each
key against the declared fields and types, so unknown keys, wrong types and impossible values fail at load time with
one message naming the key (for example ``manager.lease_s: expected a number > 0, got -1``). Other modules that
own a config section (the brain generator, the trainer) declare their dataclasses the same way and are registered
here as optional sections.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Optional, Union
from urllib.parse import urlsplit, urlunsplit

import yaml

from wirehead_core.errors import ConfigError

__all__ = [
    "BSON_LIMIT_BYTES",
    "MongoConfig",
    "FieldSpec",
    "GeneratorConfig",
    "ManagerConfig",
    "DatasetConfig",
    "ReuseConfig",
    "Config",
    "load_config",
    "config_from_dict",
    "parse_section",
    "redact_uri",
    "apply_overrides",
]

#: The MongoDB BSON document limit. A chunk document carries its payload plus about 100 bytes of keys.
BSON_LIMIT_BYTES = 16 * 1024 * 1024
_CHUNK_OVERHEAD_BYTES = 1024
MAX_CHUNK_BYTES = BSON_LIMIT_BYTES - _CHUNK_OVERHEAD_BYTES

SUPPORTED_DTYPES = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
)


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {message}")


@dataclasses.dataclass(frozen=True)
class MongoConfig:
    """Where the database lives.

    Args:
        uri (str): a standard MongoDB URI; authentication and TLS options go here.
        database (str): database name holding every wirehead collection.
        namespace (str): prefix of every collection name, so several caches can share one database.
        connect_timeout_s (float): how long one attempt to reach the server may take.
        outage_timeout_s (float): how long generators and the manager keep retrying through a server outage
            before giving up (0 = forever).
    """

    uri: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    database: str = "wirehead"
    namespace: str = "wh"
    connect_timeout_s: float = 5.0
    outage_timeout_s: float = 0.0

    def validate(self, key: str) -> None:
        _check(self.uri.startswith(("mongodb://", "mongodb+srv://")), f"{key}.uri",
               "expected a mongodb:// or mongodb+srv:// URI")
        _check(bool(self.database) and not set(self.database) & set('/\\. "$') and len(self.database) <= 63,
               f"{key}.database", "expected a non-empty name of at most 63 characters without / \\ . space \" $")
        _check(bool(self.namespace) and not set(self.namespace) & set('$ '), f"{key}.namespace",
               "expected a non-empty prefix without $ or spaces")
        _check(self.connect_timeout_s > 0, f"{key}.connect_timeout_s", "expected a number > 0")
        _check(self.outage_timeout_s >= 0, f"{key}.outage_timeout_s", "expected a number >= 0")


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One element of a sample tuple.

    Args:
        name (str): field name, used as the dict key when the dataset returns dicts.
        dtype (str, optional): if set, every sample's array must have this dtype.
        shape (list[int], optional): if set, every sample's array must have this shape.
    """

    name: str
    dtype: Optional[str] = None
    shape: Optional[list[int]] = None

    def validate(self, key: str) -> None:
        _check(bool(self.name) and self.name.isidentifier(), f"{key}.name", "expected an identifier")
        if self.dtype is not None:
            _check(self.dtype in SUPPORTED_DTYPES, f"{key}.dtype", f"expected one of {', '.join(SUPPORTED_DTYPES)}")
        if self.shape is not None:
            _check(all(d >= 0 for d in self.shape), f"{key}.shape", "expected non-negative sizes")


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """How generators write.

    Args:
        backpressure ("block" | "carry"): what a generator does when the write generation is full: ``block``
            waits for the swap; ``carry`` writes into the next generation (and blocks only when that is full too).
            No policy ever discards a sample.
        nan_policy ("allow" | "reject"): whether floating fields may hold NaN or Inf.
        max_sample_bytes (int): a sample larger than this is rejected (0 = no limit).
        prefetch (int): encoded samples that may wait for the writer threads, so the source generates the next
            sample while the previous one is written. Small samples may queue up to 32 MiB (at most 16) even when
            this is lower: the writer commits the ones waiting together, in one reservation and one insert.
        writers (int): writer threads, each with its own connection: while one inserts a group, the next encodes and
            reserves its own, so the server is not left waiting between inserts. Groups then land side by side,
            not in the order the source made them; 1 keeps that order. 0 (the default) takes 2 for samples of 512 KiB
            or more and 1 for smaller ones: many writers of small samples contend for the generation's counter
            document (16 generators of 16 KiB samples at 20 per second each: 99 % of the ideal rate with one writer
            each, 26-38 % with two, the server mostly idle).
        poll_s (float): how often a blocked generator first checks whether a swap happened; the wait doubles with
            each check, up to 16 x, so many blocked generators do not take the server from the manager.
        heartbeat_s (float): how often a generator publishes its counters.
    """

    backpressure: Literal["block", "carry"] = "block"
    nan_policy: Literal["allow", "reject"] = "allow"
    max_sample_bytes: int = 0
    prefetch: int = 1
    writers: int = 0
    poll_s: float = 0.05
    heartbeat_s: float = 1.0

    def validate(self, key: str) -> None:
        _check(self.max_sample_bytes >= 0, f"{key}.max_sample_bytes", "expected an integer >= 0")
        _check(self.prefetch >= 1, f"{key}.prefetch", "expected an integer >= 1")
        _check(self.writers >= 0, f"{key}.writers", "expected an integer >= 0 (0: chosen by sample size)")
        _check(self.poll_s > 0, f"{key}.poll_s", "expected a number > 0")
        _check(self.heartbeat_s > 0, f"{key}.heartbeat_s", "expected a number > 0")


@dataclasses.dataclass(frozen=True)
class ManagerConfig:
    """How the swap manager works.

    Args:
        lease_s (float): the swap lock's lease; a manager that stops renewing it is replaced after this long.
        poll_s (float): the manager's loop period.
        reservation_timeout_s (float): a sample id reserved but not committed for this long is given to another
            generator (its writer is presumed dead or stopped); writers of large samples renew their claim.
        verify ("full" | "structure" | "records"): what the manager checks of every committed sample before it can
            be swapped in (incrementally, while the generation fills). ``full``: its chunks' checksums (reads every
            byte once more); ``structure``: its chunks' count and sizes (a server may still read each chunk to
            answer: SecantusDB does); ``records``: its commit record only (field layout, sizes, chunk count), the
            chunks being trusted to the write order (a record is inserted only after all its chunks) and to the
            readers, which check count and checksums on every read.
        promote ("pointer" | "rename"): how a full generation becomes the read generation. ``pointer`` publishes
            its collection's name in the swap state (O(1) on every server); ``rename`` renames it over ``read``
            (O(1) on mongod; SecantusDB copies the data).
    """

    lease_s: float = 10.0
    poll_s: float = 0.05
    reservation_timeout_s: float = 30.0
    verify: Literal["full", "structure", "records"] = "full"
    promote: Literal["pointer", "rename"] = "pointer"

    def validate(self, key: str) -> None:
        _check(self.lease_s > 0, f"{key}.lease_s", "expected a number > 0")
        _check(0 < self.poll_s < self.lease_s, f"{key}.poll_s", "expected a number > 0 and < lease_s")
        _check(self.reservation_timeout_s > 0, f"{key}.reservation_timeout_s", "expected a number > 0")


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """How the dataset reads.

    Args:
        wait_timeout_s (float): how long the dataset waits for the first read generation before `TimeoutError`.
        read_timeout_s (float): how long one read keeps retrying through swaps and outages before failing.
        return_dict (bool): return ``{field: tensor}`` instead of a tuple.
        count_flush_reads (int): read counts are sent to the database in batches of this many reads …
        count_flush_s (float): … or after this many seconds, whichever comes first.
    """

    wait_timeout_s: float = 600.0
    read_timeout_s: float = 120.0
    return_dict: bool = False
    count_flush_reads: int = 256
    count_flush_s: float = 2.0

    def validate(self, key: str) -> None:
        _check(self.wait_timeout_s >= 0, f"{key}.wait_timeout_s", "expected a number >= 0")
        _check(self.read_timeout_s > 0, f"{key}.read_timeout_s", "expected a number > 0")
        _check(self.count_flush_reads >= 1, f"{key}.count_flush_reads", "expected an integer >= 1")
        _check(self.count_flush_s > 0, f"{key}.count_flush_s", "expected a number > 0")


@dataclasses.dataclass(frozen=True)
class ReuseConfig:
    """How often each sample may be read: a rate limiter between generation and training.

    Args:
        policy ("off" | "target" | "max_reads"): ``off`` keeps the classic behaviour (reads are only counted);
            ``target`` holds the mean reads per committed sample near `target`; ``max_reads`` never returns a
            sample more than `max_reads` times.
        target (float): target mean reads per committed sample (``target`` policy).
        tolerance (float): relative tolerance: the manager swaps a full write generation in only once the read
            generation has had ``(1 - tolerance) * target`` reads per sample (generators ahead wait).
        max_reads (int): hard cap of reads per sample (``max_reads`` policy).
        when_readers_ahead ("wait" | "early_swap"): when the read generation's reads are used up, readers wait for
            the next swap, or the manager swaps early with a smaller-than-cap generation.
        early_swap_min (int): the fewest committed samples an early swap takes.
        claim_batch (int): read rights a dataset process claims per database round trip.
    """

    policy: Literal["off", "target", "max_reads"] = "off"
    target: float = 1.0
    tolerance: float = 0.2
    max_reads: int = 0
    when_readers_ahead: Literal["wait", "early_swap"] = "wait"
    early_swap_min: int = 1
    claim_batch: int = 4

    def validate(self, key: str) -> None:
        _check(self.target > 0, f"{key}.target", "expected a number > 0")
        _check(0 <= self.tolerance < 1, f"{key}.tolerance", "expected a number in [0, 1)")
        _check(self.max_reads >= 0, f"{key}.max_reads", "expected an integer >= 0")
        if self.policy == "max_reads":
            _check(self.max_reads >= 1, f"{key}.max_reads", "expected an integer >= 1 with policy max_reads")
        _check(self.early_swap_min >= 1, f"{key}.early_swap_min", "expected an integer >= 1")
        _check(self.claim_batch >= 1, f"{key}.claim_batch", "expected an integer >= 1")

    def budget(self, n: int) -> Optional[int]:
        """Total reads a generation of `n` samples allows under the ``target`` policy (None otherwise)."""
        return max(1, round(self.target * n)) if self.policy == "target" else None

    def per_sample_limit(self) -> Optional[int]:
        """Reads one sample allows under the ``max_reads`` policy (None otherwise)."""
        return self.max_reads if self.policy == "max_reads" else None


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole wirehead configuration.

    Args:
        mongo (MongoConfig): database location.
        swap_cap (int): committed samples per generation; a full write generation is swapped in.
        fields (list[FieldSpec]): the sample tuple's elements; in YAML a list of names or of mappings
            ``{name, dtype, shape}``.
        chunk_bytes (int): stored chunk size; must stay below the 16 MiB BSON document limit.
        generator, manager, dataset, reuse: the sections above.
        brain, train: sections of the paper's components (optional).
    """

    mongo: MongoConfig
    swap_cap: int
    fields: list[FieldSpec]
    chunk_bytes: int = 8 * 1024 * 1024
    generator: GeneratorConfig = dataclasses.field(default_factory=GeneratorConfig)
    manager: ManagerConfig = dataclasses.field(default_factory=ManagerConfig)
    dataset: DatasetConfig = dataclasses.field(default_factory=DatasetConfig)
    reuse: ReuseConfig = dataclasses.field(default_factory=ReuseConfig)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self, key: str) -> None:
        _check(self.swap_cap >= 1, "swap_cap", "expected an integer >= 1")
        _check(len(self.fields) >= 1, "fields", "expected at least one field")
        names = [f.name for f in self.fields]
        _check(len(set(names)) == len(names), "fields", f"field names must be unique, got {names}")
        _check(1024 <= self.chunk_bytes <= MAX_CHUNK_BYTES, "chunk_bytes",
               f"expected an integer in [1024, {MAX_CHUNK_BYTES}] (below the 16 MiB BSON document limit)")

    @property
    def field_names(self) -> list[str]:
        """Field names in tuple order."""
        return [f.name for f in self.fields]

    def section(self, name: str) -> Any:
        """An optional registered section (``brain``, ``train``), parsed, or None when absent."""
        return self.extra.get(name)


#: Optional top-level sections owned by other modules: name -> dataclass. Registered by those modules' config
#: declarations (kept free of heavy imports) so that `load_config` validates them too.
_OPTIONAL_SECTIONS: dict[str, type] = {}


def register_section(name: str, cls: type) -> None:
    """Declare an optional top-level config section parsed into `cls` (a dataclass)."""
    _OPTIONAL_SECTIONS[name] = cls


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _parse_value(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _parse_value(args[0], value, key)
    if origin is Literal:
        choices = typing.get_args(tp)
        _check(value in choices, key, f"expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin is list:
        _check(isinstance(value, list), key, f"expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_parse_value(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _check(isinstance(value, Mapping), key, f"expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return parse_section(tp, value, key)
    if tp is bool:
        _check(isinstance(value, bool), key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key,
               f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        _check(isinstance(value, str), key, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")


def parse_section(cls: type, data: Any, key: str = "") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types; runs ``validate(key)``."""
    where = key or "config"
    if cls is FieldSpec and isinstance(data, str):
        data = {"name": data}
    _check(isinstance(data, Mapping), where, f"expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "extra" or cls is not Config}
    unknown = sorted(set(data) - set(fields))
    _check(not unknown, f"{key + '.' if key else ''}{unknown[0] if unknown else ''}",
           f"unknown key (known keys: {', '.join(sorted(fields))})")
    values = {}
    for name, f in fields.items():
        sub = f"{key}.{name}" if key else name
        if name in data:
            values[name] = _parse_value(hints[name], data[name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{sub}: missing required key")
    obj = cls(**values)
    if hasattr(obj, "validate"):
        obj.validate(key)
    return obj


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `data` with ``{"a.b.c": value}`` overrides applied (intermediate mappings are created)."""
    out = dict(data)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, Mapping) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def config_from_dict(data: Mapping[str, Any], overrides: Optional[Mapping[str, Any]] = None) -> Config:
    """Validate plain data into a `Config`; `overrides` maps dotted keys to values applied first."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(data).__name__}")
    import wirehead_core.paper_config  # noqa: F401 - registers the optional brain and train sections

    data = apply_overrides(data, overrides or {})
    extra = {}
    for name, cls in _OPTIONAL_SECTIONS.items():
        if name in data:
            extra[name] = parse_section(cls, data.pop(name), name)
    cfg = parse_section(Config, data)
    return dataclasses.replace(cfg, extra=extra)


def load_config(path: str | Path, overrides: Optional[Mapping[str, Any]] = None) -> Config:
    """Load and validate a YAML config file.

    Args:
        path: the YAML file.
        overrides: dotted keys to values (``{"mongo.uri": "...", "swap_cap": 10}``) applied before validation.

    Raises:
        ConfigError: one message naming the offending key.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML ({exc})") from exc
    return config_from_dict(data if data is not None else {}, overrides)


def redact_uri(uri: str) -> str:
    """The URI with any password replaced by ``***``, for logs, status output and reports."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparseable uri>"
    if parts.password is None and "@" not in parts.netloc:
        return uri
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit((parts.scheme, f"{user}:***@{hosts}", parts.path, parts.query, parts.fragment))
