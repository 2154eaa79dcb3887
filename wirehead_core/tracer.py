"""A GPU utilisation tracer: samples every GPU through NVML at a fixed cadence into a CSV, from a background thread.

Columns: ``time_s`` (seconds since the tracer started), ``unix_time``, ``source`` (``nvml`` or ``cpu-fallback``),
``device`` (GPU index or ``cpu``), ``util_percent``, ``mem_used_mib``, ``mem_total_mib``, ``power_w``.

Where NVML is unavailable (no driver, no GPU, no nvidia-ml-py) the tracer records CPU utilisation and memory through
psutil instead, with ``source = cpu-fallback`` on every row and a logged warning, so a CPU trace can never be
mistaken for a GPU one. Use it as a context manager (``with Tracer("gpu.csv"): ...``) or from the command line:
``python -m wirehead_core.tracer --out gpu.csv --hz 10 --duration 60``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import signal
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Optional

__all__ = ["COLUMNS", "Tracer", "add_cli", "main"]

logger = logging.getLogger(__name__)

COLUMNS = ["time_s", "unix_time", "source", "device", "util_percent", "mem_used_mib", "mem_total_mib", "power_w"]
_MIB = 1024.0 * 1024.0


class _NvmlProbe:
    """Reads utilisation, memory and power of every GPU through NVML."""

    source = "nvml"

    def __init__(self) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            if count == 0:
                raise RuntimeError("NVML reports no GPU")
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception:
            pynvml.nvmlShutdown()
            raise

    def read(self) -> list[list[Any]]:
        nv = self._nvml
        rows = []
        for i, h in enumerate(self._handles):
            util = mem_used = mem_total = power = None
            try:
                util = nv.nvmlDeviceGetUtilizationRates(h).gpu
            except nv.NVMLError:
                pass
            try:
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                mem_used, mem_total = mem.used / _MIB, mem.total / _MIB
            except nv.NVMLError:
                pass
            try:
                power = nv.nvmlDeviceGetPowerUsage(h) / 1000.0
            except nv.NVMLError:
                pass
            rows.append([str(i), util, mem_used, mem_total, power])
        return rows

    def close(self) -> None:
        self._nvml.nvmlShutdown()


class _CpuProbe:
    """CPU utilisation and memory through psutil (the fallback without NVML)."""

    source = "cpu-fallback"

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement interval

    def read(self) -> list[list[Any]]:
        mem = self._psutil.virtual_memory()
        return [["cpu", self._psutil.cpu_percent(interval=None), (mem.total - mem.available) / _MIB,
                 mem.total / _MIB, None]]

    def close(self) -> None:
        return None


class Tracer:
    """Background sampler of GPU (or, without NVML, CPU) utilisation into a CSV file.

    Args:
        path: CSV file to write (parent directories are created).
        hz: samples per second (default 10).
        source: ``auto`` (NVML, else CPU fallback with a warning), ``nvml`` (fail without it) or ``cpu``.

    Attributes:
        source: ``nvml`` or ``cpu-fallback`` once started.
        samples: sampling rounds written so far.
    """

    def __init__(self, path: str | Path, hz: float = 10.0, source: str = "auto") -> None:
        if not hz > 0:
            raise ValueError(f"Tracer: hz must be > 0, got {hz!r}")
        if source not in ("auto", "nvml", "cpu"):
            raise ValueError(f"Tracer: source must be auto, nvml or cpu, got {source!r}")
        self.path = Path(path)
        self.period = 1.0 / hz
        self._want = source
        self.source: Optional[str] = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    def _open_probe(self) -> Any:
        if self._want == "cpu":
            return _CpuProbe()
        try:
            return _NvmlProbe()
        except Exception as exc:  # ImportError, NVMLError (no driver / library), no GPU
            if self._want == "nvml":
                raise RuntimeError(f"Tracer: NVML is unavailable ({exc})") from exc
            logger.warning("NVML unavailable (%s): tracing CPU utilisation instead into %s (source=cpu-fallback)",
                           exc, self.path)
            return _CpuProbe()

    def start(self) -> "Tracer":
        """Open the probe and the CSV, and start the sampling thread."""
        if self._thread is not None:
            raise RuntimeError("Tracer: already started")
        probe = self._open_probe()
        self.source = probe.source
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "w", newline="")
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        fh.flush()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(probe, fh, writer), name="wirehead-tracer",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self, probe: Any, fh: Any, writer: Any) -> None:
        t0 = time.monotonic()
        due = t0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                stamp = time.time()
                for device, util, used, total, power in probe.read():
                    writer.writerow([f"{now - t0:.4f}", f"{stamp:.4f}", probe.source, device, _fmt(util),
                                     _fmt(used), _fmt(total), _fmt(power)])
                fh.flush()
                self.samples += 1
                due += self.period
                # a late round skips ahead instead of bursting, so the cadence stays fixed
                if due < time.monotonic():
                    due = time.monotonic() + self.period
                self._stop.wait(max(0.0, due - time.monotonic()))
        except BaseException as exc:  # kept for stop() to re-raise in the caller's thread
            self._error = exc
        finally:
            fh.close()
            probe.close()

    def stop(self) -> None:
        """Stop sampling, wait for the thread, close the file; re-raises an error of the sampling thread."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"Tracer: sampling failed: {error}") from error

    def __enter__(self) -> "Tracer":
        return self.start()

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.stop()


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _cli_trace(args: argparse.Namespace) -> int:
    stop = threading.Event()
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
        except ValueError:  # not the main thread
            pass
    try:
        with Tracer(args.out, hz=args.hz, source=args.source) as tracer:
            stop.wait(args.duration if args.duration is not None else None)
        logger.info("tracer wrote %d rounds (%s) to %s", tracer.samples, tracer.source, args.out)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--hz", type=float, default=10.0, help="samples per second (default 10)")
    p.add_argument("--duration", type=float, help="seconds to trace (default: until SIGINT/SIGTERM)")
    p.add_argument("--source", choices=["auto", "nvml", "cpu"], default="auto",
                   help="auto = NVML, else CPU fallback (default)")
    p.set_defaults(func=_cli_trace)


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``trace`` subcommand to an argparse subparsers object (``args.func(args) -> int``)."""
    p = subparsers.add_parser("trace", help="record GPU (or CPU fallback) utilisation to a CSV",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(p)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``python -m wirehead_core.tracer``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m wirehead_core.tracer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
