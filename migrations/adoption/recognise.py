"""Which schema a database without alembic_version has: a revision's, a known legacy
shape's, or neither (then the differences from the nearest, in sentences).

Each revision's schema is read from revisions.json, which `python -m tests.snapshot` writes
from the revisions themselves (every revision applied in turn to a scratch database and
described, as catalog.describe reads a live one), and a test keeps it current: a new
revision is known here as soon as the snapshot is regenerated, as the workflow already asks.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection

from migrations.adoption.catalog import Schema, describe, differences, names_of
from migrations.adoption.shapes import LEFTOVER_TYPES, SHAPES, Shape

REVISIONS = Path(__file__).with_name("revisions.json")


@functools.cache
def revisions() -> dict[str, Schema]:
    """Revision id -> the schema `alembic upgrade <id>` builds, in history order (read
    once per process; callers do not change it)."""
    data = json.loads(REVISIONS.read_text())
    return {rev: Schema.from_json(schema) for rev, schema in data.items()}


@dataclass
class Found:
    """What the database is: `revision` (its schema equals that revision's) or `shape`."""

    revision: str | None = None
    shape: Shape | None = None
    leftovers: tuple[str, ...] = ()  # unused legacy enum types to drop with the shape
    refusal: list[str] | None = None  # why neither, when neither


def known_names(revs: dict[str, Schema]) -> set[str]:
    return names_of(*revs.values(), *(s.schema() for s in SHAPES)) | set(LEFTOVER_TYPES)


def recognise(conn: Connection) -> Found:
    """Compare the live schema with every revision's (exactly, column order included) and
    every legacy shape's (column order aside: adoption copies by name)."""
    revs = revisions()
    live = describe(conn, known_names(revs))
    for rev, schema in revs.items():  # the earliest match: later data steps run again
        if not differences(live, schema, "", ordered=True):
            return Found(revision=rev)
    candidates: list[tuple[int, list[str], str]] = []
    for shape in SHAPES:
        leftovers, unknown = _leftovers(live, shape)
        bare = Schema(
            live.tables, {k: v for k, v in live.enums.items() if k not in leftovers}, live.functions
        )
        what = f"the nearest known shape ({shape.name}: {shape.origin})"
        found = differences(bare, shape.schema(), what, ordered=False) + unknown
        if not found:
            return Found(shape=shape, leftovers=leftovers)
        candidates.append((len(found), found, shape.name))
    for rev, schema in revs.items():
        found = differences(live, schema, f"the nearest known schema (revision {rev}'s)")
        candidates.append((len(found), found, rev))
    candidates.sort(key=lambda c: c[0])
    return Found(refusal=candidates[0][1])


def _leftovers(live: Schema, shape: Shape) -> tuple[tuple[str, ...], list[str]]:
    """The legacy enum types the shape's columns do not use but the app left behind."""
    spare, unknown = [], []
    for name, labels in live.enums.items():
        if name in shape.enums or name not in LEFTOVER_TYPES:
            continue
        if tuple(labels) in LEFTOVER_TYPES[name]:
            spare.append(name)
        else:
            unknown.append(f"enum type {name} has the labels {', '.join(labels)}, unknown here")
    return tuple(sorted(spare)), unknown


def app_tables() -> set[str]:
    """The tables a revision or a legacy shape has: finding one means the app was here."""
    return {t for schema in revisions().values() for t in schema.tables} | {
        shape.table for shape in SHAPES
    }
