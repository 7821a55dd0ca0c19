"""Benchmark data: tasks loaded with COPY, owners Zipf-skewed, created_at spread over two years."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg

END = datetime(2026, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=730)
COPY = "COPY tasks (user_id, title, description, complete, created_at, updated_at{}) FROM STDIN"
V11_COLUMNS = ", priority, due_date, tags"
TAG_PATTERNS = ("{}", "{work}", "{home,errand}", "{work,urgent}", "{someday}")
CHUNK = 20_000


def user_id(rank: int) -> str:
    """The owner of the rank-th most tasks (rank 1 owns the most)."""
    return f"user{rank:05d}"


def share(rank: int, users: int) -> float:
    """The expected fraction of all tasks that user `rank` owns (Zipf, s = 1)."""
    return (1 / rank) / sum(1 / r for r in range(1, users + 1))


def lines(rows: int, users: int, seed: int, v11: bool = False) -> Iterator[str]:
    """COPY text lines, oldest first: like a real table, ids grow with created_at. With v11,
    also the v1.1 columns as FILL sets them (ids start at 1: an empty, fresh table)."""
    rng = random.Random(seed)
    weights = list(itertools.accumulate(1 / rank for rank in range(1, users + 1)))
    owners = rng.choices(range(1, users + 1), cum_weights=weights, k=rows)
    start, step = END - SPAN, SPAN / max(rows, 1)

    def line(i: int) -> str:
        age = 1 - i / rows  # 1 = oldest: old tasks are mostly done, new ones mostly open
        done = "t" if rng.random() < 0.1 + 0.8 * age else "f"
        note = "\\N" if i % 3 else "details " * (i % 20)
        created = start + step * i
        stamp, title = created.isoformat(), f"task {i}"
        extra = ""
        if v11:
            task_id = i + 1
            title += " buy milk" if task_id % 100 == 0 else ""
            due = (
                "\\N" if task_id % 4 == 0 else (created + timedelta(days=task_id % 30)).isoformat()
            )
            priority = ("low", "medium", "high")[task_id % 3]
            extra = f"\t{priority}\t{due}\t{TAG_PATTERNS[task_id % 5]}"
        return f"{user_id(owners[i])}\t{title}\t{note}\t{done}\t{stamp}\t{stamp}{extra}\n"

    return (line(i) for i in range(rows))


def load_tasks(dsn: str, rows: int, users: int, seed: int = 6, v11: bool = False) -> None:
    """COPY rows tasks into the (empty) tasks table at dsn, then VACUUM ANALYZE it. With v11,
    the v1.1 columns too (as FILL sets them) and the heaviest owner's needles (PLANT)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        with (
            conn.transaction(),
            conn.cursor().copy(COPY.format(V11_COLUMNS if v11 else "")) as copy,
        ):
            source = lines(rows, users, seed, v11)
            while chunk := "".join(itertools.islice(source, CHUNK)):
                copy.write(chunk)
        if v11:
            conn.execute(PLANT, {"user": user_id(1)})
        conn.execute("VACUUM ANALYZE tasks")


# The v1.1 columns of every task, varied so that each filter matches a realistic share:
# priority a third each, 1 in 4 without due date, tags in five patterns ("urgent" 20%),
# "milk" in 1% of the titles (load_tasks(v11=True) writes the same values).
FILL = """
UPDATE tasks SET
    priority = (ARRAY['low', 'medium', 'high'])[1 + id % 3]::task_priority,
    due_date = CASE WHEN id % 4 = 0 THEN NULL ELSE created_at + (id % 30) * interval '1 day' END,
    tags = (ARRAY['{}', '{work}', '{home,errand}', '{work,urgent}', '{someday}'])
        [1 + id % 5]::text[],
    title = title || CASE WHEN id % 100 = 0 THEN ' buy milk' ELSE '' END
"""
# The heaviest owner's needles: a word in exactly FIVE of their titles, and a tag on the
# same five tasks (what a 5-match search and a rare tag find among ~10% of the table).
FIVE = "zebra"
RARE_TAG = "rare"
PLANT = f"""
UPDATE tasks SET title = title || ' {FIVE} crossing', tags = tags || ARRAY['{RARE_TAG}']
WHERE id IN (SELECT id FROM tasks WHERE user_id = %(user)s ORDER BY id
             LIMIT 5 OFFSET (SELECT count(*) / 2 FROM tasks WHERE user_id = %(user)s))
"""
