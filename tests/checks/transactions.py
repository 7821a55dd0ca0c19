"""11. One transaction, or built to be rerun: a revision's DDL runs either all inside its
transaction (a failure rolls it back whole) or all in autocommit blocks whose statements
can be rerun (CREATE ... IF NOT EXISTS, DROP ... IF EXISTS: migrations/ops.py), so a
retry finishes what a timeout interrupted. A revision that mixes both is half-applied
when its CONCURRENTLY build fails: the ordinary DDL stays, the version does not move,
and every retry fails."""

from __future__ import annotations

import re

from alembic.config import Config
from alembic.script import Script

from tests.checks.common import SchemaCheckError, history, name, offline_sql, parent
from tests.checks.exceptions import excepted

# Statements that are bookkeeping, not the revision's own DDL.
_BOOKKEEPING = re.compile(
    r"^(SET |RESET |CREATE TABLE alembic_version|(UPDATE|INSERT INTO|DELETE FROM) alembic_version"
    r"|DROP TABLE alembic_version)",
    re.IGNORECASE,
)
# DDL that a rerun repeats harmlessly. Other DDL outside a transaction fails on a retry
# ("already exists"); DML (a batched backfill) is the revision author's to make idempotent.
_DDL = re.compile(r"^(CREATE|DROP|ALTER)\b", re.IGNORECASE)
_RERUNNABLE = re.compile(r"\bIF (NOT )?EXISTS\b|\bVALIDATE CONSTRAINT\b", re.IGNORECASE)


def statements(sql: str) -> list[tuple[bool, str]]:
    """(inside a transaction?, statement) for each statement of alembic's offline SQL."""
    found: list[tuple[bool, str]] = []
    in_transaction, current = False, list[str]()
    for line in sql.splitlines():
        if not current and (not line.strip() or line.startswith("--")):
            continue
        if not current and line.strip().upper() in ("BEGIN;", "COMMIT;"):
            in_transaction = line.strip().upper() == "BEGIN;"
            continue
        current.append(line)
        text = "\n".join(current)
        if line.rstrip().endswith(";") and text.count("$$") % 2 == 0:
            found.append((in_transaction, text.strip()))
            current = []
    return found


def _mixed(sql: str) -> tuple[list[str], list[str], list[str]]:
    """(DDL inside the transaction, DDL in autocommit blocks, autocommit DDL not rerunnable)."""
    inside: list[str] = []
    outside: list[str] = []
    for in_transaction, statement in statements(sql):
        if not _BOOKKEEPING.match(statement):
            (inside if in_transaction else outside).append(statement.splitlines()[0])
    return inside, outside, [s for s in outside if _DDL.match(s) and not _RERUNNABLE.search(s)]


def _problem(rev: Script, direction: str, sql: str) -> str | None:
    inside, outside, once = _mixed(sql)
    if inside and outside:
        return (
            f"revision {name(rev)} {direction} mixes DDL in its transaction ({inside[0]} ...) "
            f"with DDL in an autocommit block ({outside[0]} ...): a failed or timed-out build "
            "leaves it half-applied and every retry fails. Split it: the ordinary DDL in one "
            "revision, the CONCURRENTLY build in the next, through migrations/ops.py"
        )
    if once:
        return (
            f"revision {name(rev)} {direction} runs {once[0]} outside a transaction without "
            "IF [NOT] EXISTS: a retry after a failure fails. Use migrations/ops.py"
        )
    return None


def check_one_transaction_or_rerunnable(cfg: Config) -> None:
    """11. Each revision (up and down) is one transaction, or rerunnable autocommit steps."""
    problems = []
    for rev in history(cfg):
        if excepted(rev, "one-transaction"):
            continue
        below = parent(rev)
        up = rev.revision if below == "base" else f"{below}:{rev.revision}"
        found = [
            _problem(rev, "upgrade", offline_sql(cfg, up)),
            _problem(rev, "downgrade", offline_sql(cfg, f"{rev.revision}:{below}", down=True)),
        ]
        problems += [p for p in found if p]
    if problems:
        raise SchemaCheckError(
            f"{len(problems)} revision step(s) can be left half-applied.\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
