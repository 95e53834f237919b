"""How fast an ``hkops`` command starts: ``python -m bench cli --json``.

- ``cli_start_s``: median wall time of ``hkops numbers show MSISDN`` (a fresh process each
  run: interpreter, imports, schema check, one number and its audit history) on a small
  SQLite database holding one block of 10,000 numbers.
- ``python_sqlalchemy_s`` (the anchor): median wall time of ``python -c "import sqlalchemy"``,
  measured in the same run, interleaved with the command so that both see the same load.
- ``cli_start_ratio`` = the two; goal ≤ 2.

Both sides start from compiled bytecode, as an installed package does: pip compiles SQLAlchemy's
and an installed hkops's ``.pyc`` files at install time, so hkops's are compiled here first
(``compileall``; a machine with ``PYTHONDONTWRITEBYTECODE`` set never caches them, and every
command would then compile hkops's own modules from source while SQLAlchemy's come compiled).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PREFIX = "1380013"
MSISDN = "13800138000"


def _seconds(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def run(runs: int = 11, log=None) -> dict:
    """Median start times of the command and of the anchor (``runs`` ≥ 7 each)."""
    import compileall

    import hkops

    compileall.compile_dir(str(Path(hkops.__file__).parent), quiet=1)
    with tempfile.TemporaryDirectory(prefix="hkops-bench-cli-") as work:
        env = dict(os.environ, HKOPS_DATABASE_URL=f"sqlite:///{Path(work) / 'cli.db'}", HKOPS_DATA_DIR=work,
                   HKOPS_ACTOR="bench")
        hkops = [sys.executable, "-m", "hkops"]
        subprocess.run(hkops + ["carriers", "add", "China Mobile"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(hkops + ["numbers", "add-block", PREFIX], env=env, check=True, stdout=subprocess.DEVNULL)
        command, anchor = hkops + ["numbers", "show", MSISDN], [sys.executable, "-c", "import sqlalchemy"]
        _seconds(command, env), _seconds(anchor, env)  # warm the file cache
        command_runs, anchor_runs = [], []
        for _ in range(max(runs, 7)):
            command_runs.append(_seconds(command, env))
            anchor_runs.append(_seconds(anchor, env))
            if log:
                log(f"hkops numbers show {command_runs[-1]:.3f} s, import sqlalchemy {anchor_runs[-1]:.3f} s")
    cli, bare = statistics.median(command_runs), statistics.median(anchor_runs)
    return {
        "cli_start_s": round(cli, 3),
        "python_sqlalchemy_s": round(bare, 3),
        "cli_start_ratio": round(cli / bare, 2),
        "goal": "cli_start_ratio <= 2",
        "runs": len(command_runs),
        "command": f"hkops numbers show {MSISDN}",
    }
