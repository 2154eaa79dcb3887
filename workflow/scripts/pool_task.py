"""One task of a distributed pool's SLURM array job: task 0 runs the swap manager, task i generator i.

Started by ``pool_start.py`` through ``sbatch --array=0-N --wrap``; replaces itself with the wirehead command, so
``scancel`` (SIGTERM) stops the manager or generator cleanly.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pool  # noqa: E402 (beside this script)


def main() -> None:
    """Replace this process with the task's wirehead command."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="the experiment's wirehead config")
    parser.add_argument("--index", type=int, required=True, help="array task id: 0 = manager, i = generator i")
    parser.add_argument("--source", required=True, help="the generators' --source")
    args = parser.parse_args()
    argv = pool.command(args.index, Path(args.config), args.source)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
