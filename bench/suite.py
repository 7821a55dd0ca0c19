"""1. The test suite: wall time of the README's `pytest`, split into its phases."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import Sizes, median
from bench.report import Table
from bench.suite_plugin import OUT
from tests.support import ROOT

PHASES = {
    "startup": "Python start-up, imports, collection",
    "postgres_start": "PostgreSQL start (initdb + pg_ctl start)",
    "migrate": "migrate the test database (alembic upgrade head, once)",
    "tests": "the tests themselves",
    "final_teardown": "teardown (drop database, stop and delete the server)",
    "exit": "exit",
}


def pytest_command() -> list[str]:
    """The README's test command, in the running virtualenv."""
    script = Path(sys.executable).with_name("pytest")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pytest"]


def readme_run(args: list[str], env: dict[str, str]) -> float:
    """Wall seconds of the README's `pytest` as it is (its workers included)."""
    start = time.time()
    subprocess.run(
        [*pytest_command(), "-q", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        check=False,
    )
    return time.time() - start


def one_run(args: list[str], env: dict[str, str]) -> tuple[dict[str, float], dict[str, float]]:
    """Run pytest once in one process with the timing plugin: (seconds per phase, per test)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "timings.json"
        env = {**os.environ, OUT: str(out), "PYTHONPATH": str(ROOT), **env}
        start = time.time()
        done = subprocess.run(
            [*pytest_command(), "-q", "-p", "bench.suite_plugin", "-n", "0", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        end = time.time()
        if not out.exists():
            raise RuntimeError(f"pytest did not run ({done.returncode}):\n{done.stdout[-3000:]}")
        data = json.loads(out.read_text())
    if data["failed"]:
        summary = done.stdout.partition("short test summary info")[2] or done.stdout[-2000:]
        print(f"warning: {data['failed']} test(s) failed:{summary}", file=sys.stderr)
    marks = data["marks"]
    inside = {key: marks.get(key, 0.0) for key in ("postgres_start", "migrate", "final_teardown")}
    loop = marks["loop_end"] - marks["loop_start"]
    phases = {
        "startup": marks["loop_start"] - start,
        **inside,
        "tests": loop - sum(inside.values()),
        "exit": end - marks["loop_end"],
        "total": end - start,
        "failed": data["failed"],
    }
    return phases, data["tests"]


def heaviest(seconds: dict[str, float], n: int) -> list[tuple[str, float]]:
    return sorted(seconds.items(), key=lambda kv: kv[1], reverse=True)[:n]


def run(sizes: Sizes, args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Table:
    """Run the suite (or args) sizes.suite_runs times; report the median of each phase."""
    runs = [one_run(list(args), env or {}) for _ in range(sizes.suite_runs)]
    readme = median([readme_run(list(args), env or {}) for _ in range(sizes.suite_runs)])
    phases = {key: median([r[0][key] for r in runs]) for key in [*PHASES, "total"]}
    total = phases["total"]
    table = Table(
        "1. Test suite",
        f"`{shlex.join(['pytest', '-q', *args])}` as a subprocess, {sizes.suite_runs} run(s), "
        "no warm-up (each run starts its own PostgreSQL); the phases come from a timing plugin "
        "(`-p bench.suite_plugin`) in a run with one process (`-n 0`); median per phase. "
        "Last row: the README's `pytest` as it is (pytest-xdist, one worker per core). "
        "Goal: total well under 10 s.",
        ["phase", "median s", "share"],
    )
    for key, label in PHASES.items():
        table.rows.append([label, f"{phases[key]:.2f}", f"{phases[key] / total:.0%}"])
    table.rows.append(["**total wall time, one process**", f"**{total:.2f}**", "100%"])
    table.rows.append(["**total wall time, README `pytest`**", f"**{readme:.2f}**", ""])
    failed = sum(int(r[0]["failed"]) for r in runs)
    if failed:
        table.notes.append(f"**{failed} test failure(s) during these runs** (see stderr).")
    tests = runs[-1][1]
    by_file: dict[str, float] = {}
    for name, secs in tests.items():
        by_file[name.split("::")[0]] = by_file.get(name.split("::")[0], 0.0) + secs
    table.notes.append(
        f"The {len(tests)} test calls of the last run by file (fixtures not included): "
        + "; ".join(f"`{name}` {secs:.1f} s" for name, secs in heaviest(by_file, 12))
    )
    table.notes.append(
        "Slowest test calls: "
        + "; ".join(f"`{name.split('::')[-1]}` {secs:.2f} s" for name, secs in heaviest(tests, 8))
    )
    return table
