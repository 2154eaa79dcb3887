"""The ``wirehead`` command line: server, generate, manager, status, demo (and train when available)."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

import yaml

from wirehead_core.config import Config, load_config
from wirehead_core.errors import WireheadError

__all__ = ["main", "resolve_source", "build_parser"]

_LOG = logging.getLogger("wirehead")


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _parse_kv(items: Sequence[str], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise WireheadError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, _parse_kv(args.set or [], "--set"))


def resolve_source(spec: str, config: Config, seed: Optional[int], kwargs: dict[str, Any]) -> Any:
    """Import ``pkg.module:function`` and call it, passing ``config`` and ``seed`` if it takes them, plus kwargs.

    Raises:
        WireheadError: the spec is malformed, the module or function does not exist, or it is not callable.
    """
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise WireheadError(f"--source must look like pkg.module:function, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WireheadError(f"--source: cannot import module {module_name!r}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise WireheadError(f"--source: {module_name!r} has no callable {func_name!r}")
    params = inspect.signature(func).parameters
    call: dict[str, Any] = dict(kwargs)
    if "config" in params:
        call["config"] = config
    if "seed" in params and seed is not None:
        call["seed"] = seed
    return func(**call)


def _at_least_one_second(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 1, got {text!r}")
    return value


# ---------------------------------------------------------------------- commands
def _cmd_server(args: argparse.Namespace) -> int:
    from wirehead_core.server import LocalServer, read_server_info, stop_server

    if args.action == "start":
        extra = {} if args.checkpoint_s is None else {"checkpoint_s": args.checkpoint_s}
        info = LocalServer(args.dir, port=args.port, host=args.host, **extra).start()
        _out(json.dumps({"pid": info.pid, "uri": info.uri, "kind": info.kind, "data_dir": info.data_dir}))
        if args.uri_file:
            Path(args.uri_file).write_text(info.uri + "\n")
        return 0
    if args.action == "stop":
        stopped = stop_server(args.dir)
        _out("stopped" if stopped else "no server running there")
        return 0
    info = read_server_info(args.dir)
    _out(json.dumps(None if info is None else {"pid": info.pid, "uri": info.uri, "kind": info.kind}))
    return 0


def _early_stop() -> threading.Event:
    """Record SIGTERM/SIGINT that arrive during start-up (a slow import on a busy node), for a clean stop later."""
    event = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: event.set())
    return event


def _cmd_generate(args: argparse.Namespace) -> int:
    early_stop = _early_stop()
    from wirehead_core.generator import Generator

    config = _config(args)
    source = resolve_source(args.source, config, args.seed, _parse_kv(args.arg or [], "--arg"))
    gen = Generator(config, source, name=args.name, commit_log=args.commit_log)
    gen.install_signal_handlers()
    if early_stop.is_set():
        gen.stop()
    stats = gen.run(max_samples=args.max_samples)
    _out(json.dumps({"generator": gen.name, **stats.as_dict()}))
    return 0


def _cmd_manager(args: argparse.Namespace) -> int:
    early_stop = _early_stop()
    from wirehead_core.manager import SwapManager, fault_hook_from_env

    config = _config(args)
    manager = SwapManager(config, name=args.name, fault_hook=fault_hook_from_env())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: manager.stop())
    if early_stop.is_set():
        manager.stop()
    swaps = manager.run(max_swaps=args.max_swaps, duration_s=args.duration)
    _out(json.dumps({"manager": manager.name, "swaps": swaps}))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from wirehead_core.status import collect_status, format_status

    st = collect_status(_config(args))
    _out(json.dumps(st.as_dict(), indent=2) if args.json else format_status(st))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from wirehead_core.demo import DemoOptions, format_summary, run_demo

    summary = run_demo(DemoOptions(duration_s=args.duration, generators=args.generators, swap_cap=args.swap_cap,
                                   workdir=args.workdir))
    _out(format_summary(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML configuration file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key (dotted, e.g. mongo.uri=...); repeatable")


#: Subcommands defined by modules that import torch or other heavy packages, by the module that adds them: a
#: ``generate`` or ``manager`` process does not pay for those imports (about 2 s of CPU and 200 MB each).
_HEAVY = {"train": "wirehead_core.train", "trace": "wirehead_core.tracer", "bench": "wirehead_core.bench",
          "chaos": "wirehead_core.chaos"}
_LIGHT = ("server", "generate", "manager", "status", "demo")


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The argument parser of the ``wirehead`` command (given the subcommand, without the modules of the others)."""
    parser = argparse.ArgumentParser(prog="wirehead", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("server", help="start or stop a local MongoDB-compatible server")
    p.add_argument("action", choices=["start", "stop", "info"])
    p.add_argument("--dir", default=".wirehead/server", help="data folder (default: .wirehead/server)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--uri-file", help="also write the URI to this file")
    p.add_argument("--checkpoint-s", type=_at_least_one_second, default=None, metavar="SECONDS",
                   help="SecantusDB checkpoint period (default 5): dropped generations and journal files are freed "
                        "at checkpoints")
    p.set_defaults(func=_cmd_server)

    p = sub.add_parser("generate", help="run a generator process")
    _add_config_args(p)
    p.add_argument("--source", required=True, help="pkg.module:function returning an iterable of tuples")
    p.add_argument("--arg", action="append", metavar="KEY=VALUE", help="keyword argument for the source function")
    p.add_argument("--seed", type=int, default=None, help="passed to the source function if it takes `seed`")
    p.add_argument("--max-samples", type=int, default=None, help="stop after committing this many samples")
    p.add_argument("--name", default=None, help="name shown in status output")
    p.add_argument("--commit-log", default=None, help="append one JSON line per committed sample to this file")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("manager", help="run the swap manager")
    _add_config_args(p)
    p.add_argument("--max-swaps", type=int, default=None, help="exit after this many swaps")
    p.add_argument("--duration", type=float, default=None, help="exit after this many seconds")
    p.add_argument("--name", default=None, help="name shown in the lock and events")
    p.set_defaults(func=_cmd_manager)

    p = sub.add_parser("status", help="show generations, fill, swaps, rates and reuse")
    _add_config_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("demo", help="server + generators + manager + reader on this machine, then a summary")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of reading (default 60)")
    p.add_argument("--generators", type=int, default=4, help="generator processes (default 4)")
    p.add_argument("--swap-cap", type=int, default=20, help="samples per generation (default 20)")
    p.add_argument("--workdir", default=None, help="folder for the server's data (default: a temporary one)")
    p.add_argument("--json", default=None, help="also write the summary as JSON to this file")
    p.set_defaults(func=_cmd_demo)

    wanted = [] if command in _LIGHT else [_HEAVY[command]] if command in _HEAVY else list(_HEAVY.values())
    for module_name in wanted:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name != module_name:
                raise
            continue
        add_cli: Optional[Callable[[Any], None]] = getattr(module, "add_cli", None)
        if add_cli is not None:
            add_cli(sub)
    return parser


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (2 for a wirehead error, with one clear message)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so commands that own processes (demo, chaos, bench) stop them on the way out;
    # generate and manager install their own clean-stop handlers.
    signal.signal(signal.SIGTERM, _terminate)
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except WireheadError as exc:
        sys.stderr.write(f"wirehead {args.command}: error: {exc}\n")
        return 2
    except TimeoutError as exc:
        sys.stderr.write(f"wirehead {args.command}: timeout: {exc}\n")
        return 3
    except KeyboardInterrupt:
        sys.stderr.write(f"wirehead {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
