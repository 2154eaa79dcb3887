"""Specification of the NVML tracer and its CPU fallback (wirehead_core.tracer)."""

from __future__ import annotations

import csv
import logging
import statistics
import subprocess
import sys
import time

import pytest

from wirehead_core.tracer import COLUMNS, Tracer


def nvml_available() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


def read(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


@pytest.mark.skipif(nvml_available(), reason="NVML works here: the fallback is not used")
def test_without_nvml_the_tracer_records_cpu_utilisation_and_says_so(tmp_path, caplog):
    path = tmp_path / "trace.csv"
    with caplog.at_level(logging.WARNING, logger="wirehead_core.tracer"):
        with Tracer(path, hz=20) as tracer:
            time.sleep(1.0)
    assert tracer.source == "cpu-fallback"
    assert any("cpu-fallback" in r.getMessage() for r in caplog.records)
    columns, rows = read(path)
    assert columns == COLUMNS
    assert 12 <= len(rows) <= 30
    assert {r["source"] for r in rows} == {"cpu-fallback"} and {r["device"] for r in rows} == {"cpu"}
    assert all(0.0 <= float(r["util_percent"]) <= 100.0 for r in rows)
    assert all(0 < float(r["mem_used_mib"]) < float(r["mem_total_mib"]) for r in rows)
    assert all(r["power_w"] == "" for r in rows)
    times = [float(r["time_s"]) for r in rows]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert statistics.median(gaps) == pytest.approx(0.05, abs=0.02)


@pytest.mark.skipif(nvml_available(), reason="NVML works here")
def test_requiring_nvml_without_it_fails_loudly(tmp_path):
    with pytest.raises(RuntimeError, match="NVML is unavailable"):
        Tracer(tmp_path / "t.csv", source="nvml").start()
    assert not (tmp_path / "t.csv").exists()


@pytest.mark.skipif(not nvml_available(), reason="needs an NVIDIA driver")
def test_with_nvml_every_gpu_is_sampled(tmp_path):
    with Tracer(tmp_path / "gpu.csv", hz=10) as tracer:
        time.sleep(0.5)
    _, rows = read(tmp_path / "gpu.csv")
    assert tracer.source == "nvml" and rows and {r["source"] for r in rows} == {"nvml"}
    assert all(float(r["mem_total_mib"]) > 0 for r in rows)


def test_tracer_thread_starts_and_stops_cleanly(tmp_path):
    tracer = Tracer(tmp_path / "t.csv", hz=50, source="cpu")
    tracer.start()
    thread = tracer._thread
    time.sleep(0.2)
    t0 = time.monotonic()
    tracer.stop()
    assert time.monotonic() - t0 < 0.5  # stop does not wait out a whole period
    assert not thread.is_alive()
    n = len(read(tmp_path / "t.csv")[1])
    time.sleep(0.1)
    assert len(read(tmp_path / "t.csv")[1]) == n == tracer.samples
    tracer.stop()  # idempotent
    with pytest.raises(ValueError):
        Tracer(tmp_path / "x.csv", hz=0)


def test_module_entry_point_traces_for_a_duration(tmp_path):
    out = tmp_path / "sub" / "trace.csv"
    proc = subprocess.run([sys.executable, "-m", "wirehead_core.tracer", "--out", str(out), "--hz", "10",
                           "--duration", "0.5", "--source", "cpu"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    columns, rows = read(out)
    assert columns == COLUMNS and 3 <= len(rows) <= 8
