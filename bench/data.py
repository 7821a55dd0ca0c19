"""Benchmark data: tasks loaded with COPY, owners Zipf-skewed, created_at spread over two years."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg

END = datetime(2026, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=730)
COPY = "COPY tasks (user_id, title, description, complete, created_at, updated_at) FROM STDIN"
CHUNK = 20_000


def user_id(rank: int) -> str:
    """The owner of the rank-th most tasks (rank 1 owns the most)."""
    return f"user{rank:05d}"


def share(rank: int, users: int) -> float:
    """The expected fraction of all tasks that user `rank` owns (Zipf, s = 1)."""
    return (1 / rank) / sum(1 / r for r in range(1, users + 1))


def lines(rows: int, users: int, seed: int) -> Iterator[str]:
    """COPY text lines, oldest first: like a real table, ids grow with created_at."""
    rng = random.Random(seed)
    weights = list(itertools.accumulate(1 / rank for rank in range(1, users + 1)))
    owners = rng.choices(range(1, users + 1), cum_weights=weights, k=rows)
    start, step = END - SPAN, SPAN / max(rows, 1)

    def line(i: int) -> str:
        age = 1 - i / rows  # 1 = oldest: old tasks are mostly done, new ones mostly open
        done = "t" if rng.random() < 0.1 + 0.8 * age else "f"
        note = "\\N" if i % 3 else "details " * (i % 20)
        stamp = (start + step * i).isoformat()
        return f"{user_id(owners[i])}\ttask {i}\t{note}\t{done}\t{stamp}\t{stamp}\n"

    return (line(i) for i in range(rows))


def load_tasks(dsn: str, rows: int, users: int, seed: int = 6) -> None:
    """COPY rows tasks into the (empty) tasks table at dsn, then VACUUM ANALYZE it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction(), conn.cursor().copy(COPY) as copy:
            source = lines(rows, users, seed)
            while chunk := "".join(itertools.islice(source, CHUNK)):
                copy.write(chunk)
        conn.execute("VACUUM ANALYZE tasks")
