"""What the database must have for tenant isolation: the app role, its grants (to the
column) and its session defaults, and the row-level security policies of every table it
can touch.

Declared here, next to the models; the migrations build it (`ops.enable_row_level_security`,
written by autogenerate for a table newly declared in ROW_LEVEL_SECURITY: migrations/rls.py),
and `alembic check` and schema check 13 (tests/checks/rls.py) compare it with the
database in both directions. The runtime side, one user per transaction, is
models/security.py.

A table with a user_id: `own_rows_only(table)`, the rows whose user_id is the
transaction's `app.user_id` (none set, or '', matches no row: fail closed). A table
without one, reached through its parent: `through_parent(table, parent, fk)`, the rows
whose parent row the user can see (the parent's own policies filter it), for every
command: a row cannot be inserted under, or moved to, another user's parent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# The role the app connects as: owns nothing, no superuser, no BYPASSRLS, no member of the
# tables' owner; only the privileges declared below. Migrations run as the tables' owner.
APP_ROLE = "todo_app"
USER_SETTING = "app.user_id"
# The transaction's user, or NULL when none is set: evaluated once per statement (an
# InitPlan), so the row filter stays an index condition.
CURRENT_USER_ID = f"(SELECT NULLIF(current_setting('{USER_SETTING}', true), ''))"
OWN_ROWS = f"user_id = {CURRENT_USER_ID}"
# Stands for the table's owner (the role that runs migrations) in a Policy's role.
TABLE_OWNER = "<table owner>"
# The app role's session defaults in the app's database (ALTER ROLE ... IN DATABASE ...
# SET; revision 0011). Upper bounds for a careless client, not for a hostile one: any role
# may SET its own (docs/security.md). The app's statements are index ranges that take
# milliseconds at 1M rows (BENCHMARKS.md): 10 s is a runaway query; a row or table lock
# held for 5 s is a stuck writer or a migration, and the request should fail rather than
# queue the pool behind it; a transaction left idle for 30 s is a leak (the app's are one
# statement and a commit), and its locks are released with its connection.
APP_ROLE_SETTINGS: Mapping[str, str] = {
    "statement_timeout": "10s",
    "lock_timeout": "5s",
    "idle_in_transaction_session_timeout": "30s",
}
COMMANDS = ("SELECT", "INSERT", "UPDATE", "DELETE")
MAX_IDENTIFIER = 63
PRIVILEGES = (*COMMANDS, "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN")


@dataclass(frozen=True)
class Policy:
    """One CREATE POLICY, as the migrations must build it."""

    name: str
    table: str
    command: str  # SELECT, INSERT, UPDATE, DELETE or ALL
    role: str  # APP_ROLE, or TABLE_OWNER
    using: str | None = None
    check: str | None = None

    def create_sql(self, name: str | None = None, role: str | None = None) -> str:
        """The CREATE POLICY statement (optionally under another name or for another role)."""
        sql = (
            f'CREATE POLICY "{name or self.name}" ON "{self.table}" AS PERMISSIVE '
            f'FOR {self.command} TO "{role or self.role}"'
        )
        if self.using is not None:
            sql += f" USING ({self.using})"
        if self.check is not None:
            sql += f" WITH CHECK ({self.check})"
        return sql


@dataclass(frozen=True)
class Access:
    """One table under row-level security (enabled and forced): its policies, and the app
    role's grants, each a command alone (the whole table) or with its columns, as in SQL:
    ("SELECT", "INSERT (user_id, title)", "UPDATE (title)", "DELETE")."""

    policies: tuple[Policy, ...]
    grants: tuple[str, ...]

    def __post_init__(self) -> None:
        privileges(self.grants)  # a malformed grant fails where it is declared
        for policy in self.policies:
            if len(policy.name.encode()) > MAX_IDENTIFIER:  # PostgreSQL would cut it short
                raise ValueError(f"policy name {policy.name!r} is longer than 63 bytes")


def _policies(table: str, rows: str) -> tuple[Policy, ...]:
    """The app role's four policies, all on `rows`, and the owner's policy for every row."""
    return (
        Policy(f"pl_{table}_select", table, "SELECT", APP_ROLE, using=rows),
        Policy(f"pl_{table}_insert", table, "INSERT", APP_ROLE, check=rows),
        Policy(f"pl_{table}_update", table, "UPDATE", APP_ROLE, using=rows, check=rows),
        Policy(f"pl_{table}_delete", table, "DELETE", APP_ROLE, using=rows),
        Policy(f"pl_{table}_migrations", table, "ALL", TABLE_OWNER, using="true", check="true"),
    )


def own_rows_only(table: str) -> tuple[Policy, ...]:
    """The app role reads and writes only the current user's rows; the owner (migrations,
    backfills) every row, by a policy for that role, not by a setting anyone could change."""
    return _policies(table, OWN_ROWS)


def through_parent(
    table: str, parent: str = "tasks", fk: str = "task_id", key: str = "id"
) -> tuple[Policy, ...]:
    """A child table without user_id: the app role reads and writes the rows whose parent
    row it can see, `EXISTS (SELECT 1 FROM parent p WHERE p.key = table.fk)`, the
    parent's own policies filtering it. The same check on INSERT and on the new row of an
    UPDATE: a row cannot be put under, or moved to, another user's parent.

    The parent needs its own policies (own_rows_only) and the app role SELECT on it. Index
    the child's fk: the lookup of a parent's children is an index range on it, and each
    row's check an index probe of the parent's key (docs/security.md shows the plan).
    """
    return _policies(table, f"EXISTS (SELECT 1 FROM {parent} p WHERE p.{key} = {table}.{fk})")


_GRANT = re.compile(r"\s*([A-Za-z]+)\s*(?:\(([^()]*)\))?\s*")


def privileges(grants: Iterable[str]) -> frozenset[tuple[str, str | None]]:
    """The grants as (privilege, column or None for the whole table) pairs.

    ValueError (one line) for a grant that is not a privilege with optional columns."""
    found: set[tuple[str, str | None]] = set()
    for grant in grants:
        match = _GRANT.fullmatch(grant)
        command = match.group(1).upper() if match else ""
        if match is None or command not in PRIVILEGES:
            raise ValueError(f"grant {grant!r}: expected e.g. 'SELECT' or 'INSERT (a, b)'")
        if match.group(2) is None:
            found.add((command, None))
            continue
        columns = [c.strip() for c in match.group(2).split(",")]
        if not all(columns):
            raise ValueError(f"grant {grant!r}: an empty column name")
        found.update((command, column) for column in columns)
    return frozenset(found)


def grant_list(found: Iterable[tuple[str, str | None]]) -> list[str]:
    """(privilege, column) pairs back as grants: each privilege once, its columns sorted."""
    by_command: dict[str, list[str]] = {}
    whole = set()
    for command, column in found:
        if column is None:
            whole.add(command)
        else:
            by_command.setdefault(command, []).append(column)
    order = {name: n for n, name in enumerate(PRIVILEGES)}
    grants = [(c, c) for c in whole]
    grants += [(c, f"{c} ({', '.join(sorted(cols))})") for c, cols in by_command.items()]
    return [grant for _, grant in sorted(grants, key=lambda g: (order.get(g[0], 99), g[1]))]


# Every table the app role can touch: row-level security enabled and forced, these policies,
# exactly these grants. The app writes the client's fields and, on INSERT, the owner; never
# the id (an identity), created_at (the default) or updated_at (the trigger sets it).
_TASK_FIELDS = "title, description, complete, priority, due_date, recurring, recurring_end_date"
ROW_LEVEL_SECURITY: dict[str, Access] = {
    "tasks": Access(
        own_rows_only("tasks"),
        grants=(
            "SELECT",
            f"INSERT (user_id, {_TASK_FIELDS}, tags)",
            f"UPDATE ({_TASK_FIELDS}, tags)",
            "DELETE",
        ),
    ),
}
