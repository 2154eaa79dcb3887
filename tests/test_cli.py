"""The `wirehead` command: bad input gives one clear error and keeps what is stored; server and status commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import fill_and_swap
from wirehead_core.launch import wirehead_command
from wirehead_core.manager import SwapManager
from wirehead_core.server import free_port
from wirehead_core.sources import seeded
from wirehead_core.store import Store

TESTS = Path(__file__).resolve().parent


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(wirehead_command(*args), capture_output=True, text=True, timeout=timeout, env=env)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error:" in line]


@pytest.mark.parametrize("source, message", [
    ("wrong_arity", "a sample must have 2 fields (image, label), got 1"),
    ("not_an_array", "field 'label': expected a numpy array or torch tensor, got str"),
    ("dtype_change", "field 'image': dtype float64 differs from the declared float32"),
    ("shape_change", "field 'image': shape [8, 8, 9] differs from the declared [8, 8, 8]"),
    ("none_value", "a sample must be a tuple of 2 arrays (image, label), got NoneType"),
    ("raises", "the source raised RuntimeError: scanner exploded"),
])
def test_bad_samples_stop_the_generator_with_one_clear_error_and_keep_committed_samples(make_config, source, message):
    config, path = make_config(swap_cap=10)
    SwapManager(config).step()
    result = _run("generate", "--config", str(path), "--source", f"bad_sources:{source}")
    assert result.returncode == 2, result.stderr
    errors = _errors(result.stderr)
    assert len(errors) == 1 and errors[0].startswith("wirehead generate: error:"), result.stderr
    assert message in errors[0]
    assert "Traceback" not in result.stderr
    assert Store(config).count_committed("gen.0") == 3


def test_nan_policy_reject_refuses_nan_and_allow_stores_it(make_config):
    config, path = make_config(swap_cap=10)
    SwapManager(config).step()
    rejected = _run("generate", "--config", str(path), "--source", "bad_sources:nan_values",
                    "--set", "generator.nan_policy=reject")
    assert rejected.returncode == 2 and "contains NaN or Inf" in rejected.stderr
    allowed = _run("generate", "--config", str(path), "--source", "bad_sources:nan_values")
    assert allowed.returncode == 0, allowed.stderr
    assert Store(config).count_committed("gen.0") == 3 + 4


def test_oversized_sample_is_rejected_by_the_configured_limit(make_config):
    config, path = make_config(swap_cap=10)
    SwapManager(config).step()
    result = _run("generate", "--config", str(path), "--source", "wirehead_core.sources:seeded",
                  "--set", "generator.max_sample_bytes=1000", "--max-samples", "1")
    assert result.returncode == 2 and "exceeds generator.max_sample_bytes = 1000" in result.stderr


@pytest.mark.parametrize("yaml_text, message", [
    ("mongo: {uri: 'mongodb://h:1', database: d}\nswap_cap: 0\nfields: [a]\n", "swap_cap: expected an integer >= 1"),
    ("mongo: {uri: 'mongodb://h:1', database: d}\nswap_cap: 5\nfields: [a]\nextra_key: 1\n", "extra_key: unknown key"),
    ("mongo: {uri: 'mongodb://h:1', database: d}\nfields: [a]\n", "swap_cap: missing required key"),
    ("mongo: {uri: 'mongodb://h:1', database: d}\nswap_cap: 5\nfields: [a]\nchunk_bytes: 20000000\n",
     "chunk_bytes: expected an integer in"),
])
def test_bad_config_files_fail_with_one_message_naming_the_key(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    result = _run("status", "--config", str(path))
    assert result.returncode == 2
    errors = _errors(result.stderr)
    assert len(errors) == 1 and message in errors[0], result.stderr


def test_unreachable_server_at_start_is_reported_after_the_outage_timeout(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"mongo: {{uri: 'mongodb://127.0.0.1:{free_port()}/?directConnection=true', database: d, "
                    "connect_timeout_s: 0.5, outage_timeout_s: 2}\nswap_cap: 5\nfields: [image, label]\n")
    result = _run("generate", "--config", str(path), "--source", "wirehead_core.sources:seeded")
    assert result.returncode == 2
    assert "unreachable" in _errors(result.stderr)[0]


def test_malformed_source_spec_is_rejected(make_config):
    _, path = make_config()
    result = _run("generate", "--config", str(path), "--source", "no_colon_here")
    assert result.returncode == 2 and "--source must look like pkg.module:function" in result.stderr
    result = _run("generate", "--config", str(path), "--source", "wirehead_core.sources:nothing")
    assert result.returncode == 2 and "has no callable 'nothing'" in result.stderr


def test_server_start_info_stop(tmp_path):
    data = tmp_path / "srv"
    refused = _run("server", "start", "--dir", str(data), "--checkpoint-s", "0")
    assert refused.returncode == 2 and "--checkpoint-s: expected a number of seconds >= 1" in refused.stderr
    assert not (data / "server.json").exists()
    started = _run("server", "start", "--dir", str(data), "--uri-file", str(tmp_path / "uri"), "--checkpoint-s", "7")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    if info["kind"] == "secantus" and "SECANTUS_CHECKPOINT_SECONDS" not in os.environ:
        environ = Path(f"/proc/{info['pid']}/environ").read_bytes().split(b"\0")
        assert b"SECANTUS_CHECKPOINT_SECONDS=7" in environ
    assert info["uri"].startswith("mongodb://127.0.0.1:") and (tmp_path / "uri").read_text().strip() == info["uri"]
    assert json.loads(_run("server", "info", "--dir", str(data)).stdout)["pid"] == info["pid"]
    assert _run("server", "stop", "--dir", str(data)).stdout.strip() == "stopped"
    assert json.loads(_run("server", "info", "--dir", str(data)).stdout) is None


def test_status_reports_generations_rates_and_reuse_without_credentials(make_config):
    config, path = make_config(swap_cap=4)
    fill_and_swap(config, 2, seeded(config, seed=3, count=9))
    from wirehead_core.dataset import WireheadDataset

    ds = WireheadDataset(config)
    for i in range(8):
        ds[i % 4]
    ds.close()
    result = _run("status", "--config", str(path), "--json")
    assert result.returncode == 0, result.stderr
    st = json.loads(result.stdout)
    assert (st["read_gen"], st["write_gen"], st["swaps"], st["phase"]) == (1, 2, 2, "idle")
    assert st["fill"] == pytest.approx(1 / 4)
    assert (st["produced"], st["committed"], st["lost_after_commit"]) == (9, 9, 0)
    assert st["reads"] == 8 and st["reuse_mean"] == pytest.approx(2.0)
    text = _run("status", "--config", str(path)).stdout
    assert "swaps" in text and "reuse" in text


def test_credentials_never_appear_in_status_or_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"mongo: {{uri: 'mongodb://alice:hunter2@127.0.0.1:{free_port()}/?directConnection=true', "
                    "database: d, connect_timeout_s: 0.5, outage_timeout_s: 1}\nswap_cap: 5\nfields: [image, label]\n")
    for args in (("status", "--config", str(path)),
                 ("generate", "--config", str(path), "--source", "wirehead_core.sources:seeded")):
        result = _run(*args)
        assert result.returncode != 0
        assert "hunter2" not in result.stdout + result.stderr
        assert "alice:***@" in result.stderr


def test_module_entry_point_matches_console_script():
    result = subprocess.run([sys.executable, "-m", "wirehead_core.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "generate" in result.stdout and "manager" in result.stdout


def test_a_generator_stopped_while_it_is_still_starting_exits_cleanly(make_config, tmp_path):
    _, path = make_config()
    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(wirehead_command("generate", "--config", str(path), "--source", "bad_sources:slow_setup",
                                             "--arg", f"marker={marker}"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["committed"] == 0
