# Config validation, paths and helper functions shared by every rule file.
import math
import subprocess
import sys
from pathlib import Path

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")


wildcard_constraints:
    n=r"\d+",
    name=r"[A-Za-z0-9_]+",


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


# Training experiments (Tables I-II, utilisation and Dice figures): the enabled entries of training.experiments.
TRAINING = config.get("training", {})
EXPERIMENTS = {name: spec for name, spec in TRAINING.get("experiments", {}).items() if spec.get("enabled", True)}
TRAIN_DIR = f"results/{EXP}/train/{{name}}"


def distributed(name):
    """Whether experiment `name` runs its generators as separate jobs (rule pool_start)."""
    spec = EXPERIMENTS[name]
    return spec["mode"] == "wirehead" and spec.get("placement", "local") == "distributed"


def experiment_metrics():
    """Every enabled experiment's metrics file."""
    return expand(f"{TRAIN_DIR}/metrics.json", name=list(EXPERIMENTS))


def pools_stopped():
    """The stop markers of every distributed experiment's generator pool."""
    return expand(f"{TRAIN_DIR}/pool.stopped", name=[n for n in EXPERIMENTS if distributed(n)])


def measurement_done(kind, key):
    """The file that says a measured job is over: a sweep point's result, an experiment's metrics, or for a
    distributed experiment its pool's stop marker (its generators must be gone before the next measurement)."""
    if kind == "scaling":
        return f"results/{EXP}/scaling/n{key}.json"
    return f"{TRAIN_DIR}/pool.stopped".format(name=key) if distributed(key) else f"{TRAIN_DIR}/metrics.json".format(
        name=key)


# With training.sequential (one machine) the measured jobs run one after another, in this order, so that none
# of them measures another's load; on a cluster they run side by side.
MEASURED = [("train", name) for name in EXPERIMENTS] + [("scaling", n) for n in GENERATORS]


def previous_measurement(kind, key):
    """Under training.sequential, the measured job before this one (its done file); else nothing."""
    if not TRAINING.get("sequential", False):
        return []
    position = MEASURED.index((kind, str(key)) if kind == "train" else (kind, int(key)))
    return [measurement_done(*MEASURED[position - 1])] if position else []


def after_previous_experiment(wildcards):
    return previous_measurement("train", wildcards.name)


def after_previous_point(wildcards):
    return previous_measurement("scaling", wildcards.n)


def pool_ready(wildcards):
    """A distributed experiment trains once its pool is ready; the others wait for the previous measurement."""
    if distributed(wildcards.name):
        return f"{TRAIN_DIR}/pool.ready".format(name=wildcards.name)
    return after_previous_experiment(wildcards)


def experiment_spec(wildcards):
    return EXPERIMENTS[wildcards.name]


def experiment_database(wildcards):
    """Each experiment writes its own database on the shared server."""
    return f"train_{wildcards.name}"


def train_threads(wildcards):
    """The trainer's threads, plus one per generator and one for the manager when they run beside it."""
    spec = EXPERIMENTS[wildcards.name]
    beside = spec["mode"] == "wirehead" and not distributed(wildcards.name)
    return int(TRAINING["threads"]) + (int(spec.get("generators", 1)) + 1 if beside else 0)


def train_runtime(wildcards):
    """SLURM time limit (minutes): start-up, the budget, evaluation and shutdown."""
    return math.ceil((TRAINING["startup_timeout_s"] + 1.2 * TRAINING["budget_s"] + 300) / 60)


def training_outputs():
    """Tables I-II and the utilisation and Dice figures, when any experiment is enabled."""
    if not EXPERIMENTS:
        return []
    return [f"results/tables/{t}.{ext}" for t in ("table1_read_throughput", "table2_generation_throughput")
            for ext in ("csv", "md")] + ["results/figures/utilisation.png", "results/figures/dice.png"]


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


def pool_record(name):
    """Launch record of a distributed experiment's generator pool."""
    return f"{TRAIN_DIR}/pool.launch.json".format(name=name)


def teardown_server():
    """Stop every recorded generator pool, then the experiment's server (idempotent; onsuccess and onerror)."""
    for name in EXPERIMENTS:
        if distributed(name) and Path(pool_record(name)).exists():
            subprocess.run([PYTHON, SERVER_STOP_SCRIPT, "--record", pool_record(name)], check=False)
    record = Path(SERVER_RECORD)
    if not record.exists():
        Path(SERVER_URI).unlink(missing_ok=True)
        return
    subprocess.run([PYTHON, SERVER_STOP_SCRIPT, "--record", str(record), "--uri", SERVER_URI], check=False)
