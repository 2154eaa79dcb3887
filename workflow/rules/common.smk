# Config validation, paths and helper functions shared by every rule file.
import math
import subprocess
import sys
from pathlib import Path

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")


wildcard_constraints:
    n=r"\d+",


EXP = config["experiment"]
GENERATORS = sorted(config["scaling"]["generators"])
# The interpreter running this workflow (the project's venv, which has wirehead_core installed).
PYTHON = sys.executable
# Absolute, so that the workflow also runs with --directory elsewhere (CI does).
SERVER_STOP_SCRIPT = str(Path(workflow.basedir) / "scripts" / "server_stop.py")

SERVER_DIR = f"results/{EXP}/database"
SERVER_URI = f"results/{EXP}/server.uri"
SERVER_STOPPED = f"results/{EXP}/server.stopped"
# Written by scripts/server_start.py as soon as a server exists (before it answers), read by every teardown.
SERVER_RECORD = f"{SERVER_DIR}/launch.json"


def scaling_points():
    """The sweep's per-point results, one per generator count in the config."""
    return expand(f"results/{EXP}/scaling/n{{n}}.json", n=GENERATORS)


def server_launcher(wildcards=None):
    """``slurm`` when this workflow runs with the SLURM executor (the server becomes its own sbatch job)."""
    plugin = workflow.executor_plugin
    return "slurm" if plugin is not None and plugin.name == "slurm" else "local"


def scaling_threads(wildcards):
    """A sweep point runs the manager plus N generator processes: one core each."""
    return int(wildcards.n) + 1


def sample_mb():
    """Size of one sample in MB: a float32 image plus a uint8 label of the configured shape."""
    return 5 * math.prod(config["cache"]["shape"]) / 1e6


def scaling_mem_mb(wildcards):
    """Per process (manager, generators, the point's driver): about 300 MB of Python plus a few sample copies."""
    return math.ceil((int(wildcards.n) + 2) * (300 + 4 * sample_mb()))


def scaling_database(wildcards):
    """Each sweep point writes its own database on the shared server."""
    return f"{config['cache']['database_prefix']}_n{wildcards.n}"


def scaling_fails(wildcards):
    """Fault injection: whether this sweep point must fail after its run (config fail_point)."""
    return config["fail_point"] == int(wildcards.n)


def scaling_runtime(wildcards):
    """SLURM time limit (minutes) of a sweep point: start-up, the measured window and shutdown."""
    s = config["scaling"]
    return math.ceil((s["startup_timeout_s"] + s["duration_s"] + 120) / 60)


def teardown_server():
    """Stop the experiment's server if one is recorded (idempotent; used by onsuccess and onerror)."""
    record = Path(SERVER_RECORD)
    if not record.exists():
        Path(SERVER_URI).unlink(missing_ok=True)
        return
    subprocess.run([PYTHON, SERVER_STOP_SCRIPT, "--record", str(record), "--uri", SERVER_URI], check=False)
