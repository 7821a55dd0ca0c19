"""What every benchmark shares: the sizes, a throwaway server, clocks and percentiles."""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import PgServer, embedded_server


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark runs: the full defaults, or tiny ones for the smoke test."""

    suite_runs: int = 3  # 1: whole pytest runs
    isolation_runs: int = 300  # 2: tests per strategy (the slow strategies run a tenth)
    deploy_runs: int = 10  # 3: processes per command
    deploy_reference: bool = True  # 3: also time `import models` (for the analysis)
    rows: tuple[int, ...] = (10_000, 100_000, 1_000_000)  # 4: rows in tasks
    users: int = 10_000  # 4, 5: owners, Zipf-skewed
    query_runs: int = 500  # 4: list_tasks calls per case
    writers: int = 4  # 5: writer threads
    around: float = 0.5  # 5: seconds of writes before and after the DDL
    chain: tuple[int, ...] = (1, 10, 50)  # 6: generated revisions on top of the real ones
    checks: tuple[str, ...] = ()  # 6: the schema checks to time (empty: all)
    warmup: int = 5  # discarded runs before each timed series
    crud_threads: tuple[int, ...] = (1, 20)  # 7: concurrent users, direct and through PgBouncer
    crud_rounds: int = 300  # 7: create/get/update/delete rounds per user and run
    stall_revisions: int = 0  # 8: the last N contract revisions run under load (0: all)
    # `alembic` processes under load (5, 8, 11) from the tests' zygote (tests/zygote.py,
    # imports done) instead of a new interpreter: the smoke run only; the deploy benchmark
    # (3) always times a new interpreter, as a deploy starts one.
    warm_processes: bool = False


SMOKE = Sizes(
    suite_runs=1,
    isolation_runs=10,
    deploy_runs=1,
    deploy_reference=False,
    rows=(300,),
    users=20,
    query_runs=1,
    writers=1,
    around=0.05,
    chain=(0, 1),
    checks=("single_head", "snapshot"),
    warmup=0,
    crud_threads=(2,),
    crud_rounds=3,
    stall_revisions=1,
    warm_processes=True,
)


@contextmanager
def throwaway_server() -> Iterator[PgServer]:
    """An embedded PostgreSQL in a temporary directory, stopped and deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, embedded_server(Path(tmp)) as server:
        yield server


def clock(action: Callable[[], object]) -> float:
    """Seconds that one call of action takes (wall clock)."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def pct(samples: list[float], p: float) -> float:
    """The p-th percentile (0..100) of samples, nearest rank."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def ms(seconds: float) -> str:
    """Seconds as milliseconds for a table cell."""
    return f"{seconds * 1000:.2f}" if seconds < 0.1 else f"{seconds * 1000:.0f}"


def ratio(a: float, b: float) -> str:
    """a / b as a table cell."""
    return f"{a / b:.2f}x" if b > 0 else "n/a"
