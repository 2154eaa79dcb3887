"""Configuration: the minimal file loads, everything else defaults, and every mistake names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from wirehead_core import ConfigError, load_config
from wirehead_core.config import BSON_LIMIT_BYTES, config_from_dict, redact_uri

MINIMAL = """\
mongo:
  uri: mongodb://127.0.0.1:27017/?directConnection=true   # auth and TLS go through the standard URI
  database: wirehead
swap_cap: 100
fields: [image, label]
"""


def _base() -> dict:
    return {"mongo": {"uri": "mongodb://h:1", "database": "d"}, "swap_cap": 3, "fields": ["a"]}


def test_minimal_file_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL)
    cfg = load_config(path)
    assert cfg.swap_cap == 100
    assert cfg.field_names == ["image", "label"]
    assert cfg.chunk_bytes < BSON_LIMIT_BYTES
    assert cfg.generator.backpressure == "block"
    assert cfg.manager.lease_s > 0 and cfg.mongo.namespace == "wh"


def test_overrides_apply_dotted_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL)
    cfg = load_config(path, {"swap_cap": 7, "mongo.database": "other", "generator.backpressure": "carry"})
    assert (cfg.swap_cap, cfg.mongo.database, cfg.generator.backpressure) == (7, "other", "carry")


def test_fields_accept_declared_dtype_and_shape() -> None:
    cfg = config_from_dict({**_base(), "fields": [{"name": "img", "dtype": "bfloat16", "shape": [2, 3]}, "lab"]})
    assert cfg.fields[0].dtype == "bfloat16" and cfg.fields[0].shape == [2, 3] and cfg.fields[1].dtype is None


@pytest.mark.parametrize("change, key", [
    ({"swap_cap": 0}, "swap_cap"),
    ({"swap_cap": -3}, "swap_cap"),
    ({"swap_cap": "ten"}, "swap_cap"),
    ({"swap_cap": 2.5}, "swap_cap"),
    ({"chunk_bytes": BSON_LIMIT_BYTES}, "chunk_bytes"),
    ({"chunk_bytes": 17 * 1024 * 1024}, "chunk_bytes"),
    ({"colour": "red"}, "colour"),
    ({"manager": {"lease_s": -1}}, "manager.lease_s"),
    ({"manager": {"leese_s": 1}}, "manager.leese_s"),
    ({"generator": {"backpressure": "drop"}}, "generator.backpressure"),
    ({"fields": []}, "fields"),
    ({"fields": ["a", "a"]}, "fields"),
    ({"fields": [{"name": "a", "dtype": "float8"}]}, "fields[0].dtype"),
    ({"mongo": {"uri": "http://x", "database": "d"}}, "mongo.uri"),
    ({"mongo": {"uri": "mongodb://x", "database": "a.b"}}, "mongo.database"),
    ({"dataset": {"return_dict": "yes"}}, "dataset.return_dict"),
])
def test_bad_values_fail_with_one_message_naming_the_key(change: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({**_base(), **change})
    assert str(info.value).startswith(key + ":"), str(info.value)
    assert "\n" not in str(info.value)


def test_missing_required_key_is_named() -> None:
    data = _base()
    del data["swap_cap"]
    with pytest.raises(ConfigError, match=r"^swap_cap: missing required key"):
        config_from_dict(data)


def test_unreadable_and_invalid_yaml_files_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("swap_cap: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_redact_uri_hides_passwords_only() -> None:
    assert redact_uri("mongodb://alice:s3cret@h:1/?tls=true") == "mongodb://alice:***@h:1/?tls=true"
    assert "s3cret" not in redact_uri("mongodb://alice:s3cret@h1:1,h2:2/db")
    assert redact_uri("mongodb://h:1/") == "mongodb://h:1/"
