"""Shared fixtures: one real MongoDB-compatible server per test session, a fresh database per test.

Set ``WIREHEAD_TEST_URI`` to run the suite against an existing server (a real mongod, say) instead.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from wirehead_core.config import Config, apply_overrides, config_from_dict
from wirehead_core.launch import spawn, terminate, wirehead_command
from wirehead_core.server import LocalServer


@pytest.fixture(scope="session")
def server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of the session's server."""
    given = os.environ.get("WIREHEAD_TEST_URI")
    if given:
        yield given
        return
    server = LocalServer(tmp_path_factory.mktemp("server"))
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def make_config(server_uri: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., tuple[Config, Path]]:
    """Build a config on a database unique to this test; returns ``(config, yaml_path)``."""
    db = "t_" + re.sub(r"[^A-Za-z0-9]", "_", request.node.name)[-36:] + f"_{time.monotonic_ns() % 10**9}"
    counter = [0]

    def build(**overrides: Any) -> tuple[Config, Path]:
        data: dict[str, Any] = {
            "mongo": {"uri": server_uri, "database": db, "connect_timeout_s": 3},
            "swap_cap": 5,
            "fields": [{"name": "image", "dtype": "float32", "shape": [8, 8, 8]},
                       {"name": "label", "dtype": "uint8", "shape": [8, 8, 8]}],
            "manager": {"lease_s": 3, "reservation_timeout_s": 2, "poll_s": 0.05},
            "dataset": {"wait_timeout_s": 60, "read_timeout_s": 60},
        }
        data = apply_overrides(data, {k.replace("__", "."): v for k, v in overrides.items()})
        counter[0] += 1
        path = tmp_path / f"config{counter[0]}.yaml"
        path.write_text(yaml.safe_dump(data))
        return config_from_dict(data), path

    return build


class Procs:
    """Real wirehead processes started by a test, all stopped at teardown."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[Any] = []
        self.count = 0

    def start(self, *args: str, env: dict[str, str] | None = None) -> Any:
        self.count += 1
        proc = spawn(wirehead_command(*args), self.logdir / f"{self.count:02d}-{args[0]}.log", env=env)
        proc.log_path = self.logdir / f"{self.count:02d}-{args[0]}.log"
        self.procs.append(proc)
        return proc

    def generator(self, cfg_path: Path, seed: int, *extra: str, env: dict[str, str] | None = None) -> Any:
        return self.start("generate", "--config", str(cfg_path), "--source", "wirehead_core.sources:seeded",
                          "--seed", str(seed), *extra, env=env)

    def manager(self, cfg_path: Path, *extra: str, env: dict[str, str] | None = None) -> Any:
        return self.start("manager", "--config", str(cfg_path), *extra, env=env)

    def stop_all(self) -> None:
        terminate(self.procs, timeout_s=15)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Start real processes; everything is terminated at teardown."""
    group = Procs(tmp_path / "logs")
    try:
        yield group
    finally:
        group.stop_all()
