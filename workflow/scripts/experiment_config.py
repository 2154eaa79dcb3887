"""The wirehead config of one training experiment, shared by its trainer, manager and generators.

Built from the workflow config's ``training:`` section and the experiment's own entry: the cache (server URI, the
experiment's own database, ``swap_cap``, image/label fields of the brain grid), the ``brain:`` section the generators
and the coupled trainer use, the ``train:`` section of the trainer, and the ``reuse:`` policy.
"""

import copy
from pathlib import Path
from typing import Any

import yaml


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override` merged in, recursively for nested dicts (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def build(uri: str, database: str, training: dict[str, Any], spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The experiment's wirehead config as a dict."""
    brain = merged(training["brain"], spec.get("brain", {}))
    grid = int(brain["grid"])
    train = merged(training["train"], spec.get("train", {}))
    train.update(mode=spec["mode"], budget_s=float(training["budget_s"]), output_dir=str(workdir / "train"),
                 progress=False, threads=int(training["threads"]))
    config = {
        "mongo": {"uri": uri, "database": database, "namespace": "wh"},
        "swap_cap": int(spec.get("swap_cap", training["swap_cap"])),
        "fields": [{"name": "image", "dtype": "float32", "shape": [grid] * 3},
                   {"name": "label", "dtype": "uint8", "shape": [grid] * 3}],
        "reuse": spec.get("reuse", {"policy": "off"}),
        "brain": brain,
        "train": train,
    }
    return merged(config, training.get("wirehead", {}))


def write(path: Path, uri: str, database: str, training: dict[str, Any], spec: dict[str, Any]) -> Path:
    """Write the experiment's config beside its results; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(build(uri, database, training, spec, path.parent), sort_keys=False))
    return path
