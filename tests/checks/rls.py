"""13. Row-level security on every table with a user_id, as models/security.py
declares it.

    check_row_level_security(cfg, server)

After `alembic upgrade` one revision at a time on a fresh database, at head:
- every table with a user_id column has row-level security enabled AND forced;
- the app role has a permissive policy for each of SELECT, INSERT, UPDATE, DELETE, and
  every expression of those filters by user_id against the transaction's app.user_id;
- no policy that applies to the app role (or PUBLIC) is always true; an always-true
  policy is allowed only for the table's owner (migrations, backfills);
- the app role has nothing but SELECT/INSERT/UPDATE/DELETE on tables and USAGE on
  sequences, and owns nothing;
- the policies and flags are exactly the declaration (models/security.py), compared in
  the database's own words: each declared policy is created under a scratch name in a
  rolled-back transaction and read back from pg_policies.
Each finding names the table and the policy, and the revision that last changed it.
"""

from __future__ import annotations

import importlib
import itertools
import pkgutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from sqlalchemy import Connection, MetaData

from models.security import APP_ROLE, ROW_LEVEL_SECURITY, TABLE_OWNER, Policy
from tests.checks.common import SchemaCheckError, alembic_step, bound, history
from tests.support import PgServer

COMMANDS = ("SELECT", "INSERT", "UPDATE", "DELETE")
USER_SETTING_CALL = "current_setting('app.user_id'"
DECLARATION = "models/security.py"


@dataclass(frozen=True)
class DbPolicy:
    """A row of pg_policies."""

    command: str
    permissive: bool
    roles: tuple[str, ...]
    using: str | None
    check: str | None


@dataclass(frozen=True)
class DbTable:
    """What row-level security looks like on one table."""

    owner: str
    has_user_id: bool
    enabled: bool
    forced: bool
    policies: Mapping[str, DbPolicy]


def read_tables(conn: Connection) -> dict[str, DbTable]:
    """Every table of the current schema (alembic_version left out), with its policies."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_userbyid(c.relowner), c.relrowsecurity, "
            "c.relforcerowsecurity, EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid "
            "AND a.attname = 'user_id' AND NOT a.attisdropped) "
            "FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
            "AND c.relkind IN ('r', 'p') AND c.relname <> 'alembic_version'"
        )
    ).all()
    policies: dict[str, dict[str, DbPolicy]] = {}
    for table, name, permissive, roles, cmd, using, check in conn.execute(
        sa.text(
            "SELECT tablename, policyname, permissive = 'PERMISSIVE', roles, cmd, qual, "
            "with_check FROM pg_policies WHERE schemaname = current_schema()"
        )
    ):
        policies.setdefault(table, {})[name] = DbPolicy(
            cmd, permissive, tuple(sorted(roles)), using, check
        )
    return {
        name: DbTable(owner, has_user_id, enabled, forced, policies.get(name, {}))
        for name, owner, enabled, forced, has_user_id in rows
    }


def app_role_privileges(conn: Connection, app_role: str) -> list[str]:
    """Findings: privileges of the app role beyond DML on tables and USAGE on sequences,
    and anything it owns."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, c.relkind, a.privilege_type, "
            "c.relowner = (SELECT oid FROM pg_roles WHERE rolname = :role) "
            "FROM pg_class c LEFT JOIN LATERAL aclexplode(c.relacl) a "
            "ON a.grantee = (SELECT oid FROM pg_roles WHERE rolname = :role) "
            "WHERE c.relnamespace = current_schema()::regnamespace"
        ),
        {"role": app_role},
    ).all()
    dml = {"SELECT", "INSERT", "UPDATE", "DELETE"}
    problems = set()
    for name, kind, privilege, owns in rows:
        if owns:
            problems.add(f"{name}: the app role {app_role} owns it (it must own nothing)")
        if privilege is None:
            continue
        if name == "alembic_version" or privilege not in (dml if kind in "rpv" else {"USAGE"}):
            problems.add(f"{name}: the app role {app_role} has {privilege} on it")
    return sorted(problems)


def _always_true(expression: str | None) -> bool:
    return expression is not None and expression.strip("() ").lower() == "true"


def _effective(policy: DbPolicy) -> list[tuple[str, str | None]]:
    """The expressions PostgreSQL applies for the policy's command: (label, SQL)."""
    using = ("USING", policy.using)
    check = ("WITH CHECK", policy.check if policy.check is not None else policy.using)
    return {"SELECT": [using], "DELETE": [using], "INSERT": [check]}.get(
        policy.command, [using, check]
    )


def rule_findings(table: str, info: DbTable, app_role: str) -> list[tuple[str | None, str]]:
    """(policy name or None, finding) for one table with a user_id column."""
    found: list[tuple[str | None, str]] = []
    if not info.enabled:
        found.append((None, "row-level security is not enabled"))
    if not info.forced:
        found.append((None, "row-level security is not forced (the owner would skip it)"))
    for_app = {
        name: p
        for name, p in info.policies.items()
        if p.permissive and ({app_role, "public"} & set(p.roles))
    }
    for name, policy in sorted(info.policies.items()):
        if not policy.permissive:
            continue
        for label, expression in _effective(policy):
            if _always_true(expression) and policy.roles != (info.owner,):
                whom = ", ".join(policy.roles)
                found.append((name, f"{label} is always true for {whom}: every row, every user"))
            elif name in for_app and not (
                expression and USER_SETTING_CALL in expression and "user_id" in expression
            ):
                found.append(
                    (name, f"{label} ({expression}) does not compare user_id with app.user_id")
                )
    for command in COMMANDS:
        if not any(p.command in (command, "ALL") for p in for_app.values()):
            found.append((None, f"no {command} policy for the app role {app_role}"))
    return found


def canonical(conn: Connection, policy: Policy, owner: str) -> DbPolicy:
    """The declared policy as pg_policies prints it (created under a scratch name, undone)."""
    role = owner if policy.role == TABLE_OWNER else policy.role
    scratch = f"declared_{policy.name}"[:63]
    with conn.begin_nested() as savepoint:
        conn.exec_driver_sql(policy.create_sql(name=scratch, role=role))
        row = conn.execute(
            sa.text(
                "SELECT cmd, permissive = 'PERMISSIVE', roles, qual, with_check FROM pg_policies "
                "WHERE schemaname = current_schema() AND tablename = :t AND policyname = :n"
            ),
            {"t": policy.table, "n": scratch},
        ).one()
        savepoint.rollback()
    cmd, permissive, roles, using, check = row
    return DbPolicy(cmd, permissive, tuple(sorted(roles)), using, check)


def declaration_findings(
    conn: Connection,
    tables: Mapping[str, DbTable],
    declared: Mapping[str, Iterable[Policy]],
    model_tables: Iterable[str],
) -> list[tuple[str, str | None, str]]:
    """(table, policy, finding) where the database and the declaration disagree."""
    found: list[tuple[str, str | None, str]] = []
    for table in sorted(set(model_tables) - set(declared)):
        found.append((table, None, f"has a user_id in the models but no entry in {DECLARATION}"))
    for table, info in sorted(tables.items()):
        if table not in declared and (info.has_user_id or info.enabled or info.policies):
            found.append((table, None, f"is not declared in {DECLARATION}"))
    for table, policies in sorted(declared.items()):
        built = tables.get(table)
        if built is None:
            found.append((table, None, f"is declared in {DECLARATION}, not in the database"))
            continue
        wanted = {p.name: p for p in policies}
        for name in sorted(set(built.policies) - set(wanted)):
            found.append((table, name, f"is in the database, not in {DECLARATION}"))
        for name, policy in sorted(wanted.items()):
            actual = built.policies.get(name)
            if actual is None:
                found.append((table, name, f"is declared in {DECLARATION}, not in the database"))
                continue
            expected = canonical(conn, policy, built.owner)
            for field in ("command", "permissive", "roles", "using", "check"):
                have, want = getattr(actual, field), getattr(expected, field)
                if have != want:
                    found.append(
                        (table, name, f"{field}: the database has {have}, {DECLARATION} {want}")
                    )
    conn.rollback()
    return found


def last_change(states: list[tuple[str, dict[str, DbTable]]], table: str, key: str | None) -> str:
    """' (last changed by revision X)': the revision after which this table's policy (or,
    key None, its flags and policy set) last looked different."""

    def view(tables: dict[str, DbTable]) -> Any:
        info = tables.get(table)
        if info is None:
            return None
        if key is None:
            return (info.enabled, info.forced, tuple(sorted(info.policies)))
        return info.policies.get(key)

    blamed = None
    for (_, before), (rev, after) in itertools.pairwise(states):
        if view(before) != view(after):
            blamed = rev
    return f" (last changed by revision {blamed})" if blamed else ""


def _models_with_user_id() -> list[str]:
    import models

    for module in pkgutil.iter_modules(models.__path__):
        importlib.import_module(f"models.{module.name}")  # registers every table
    from sqlmodel import SQLModel

    return [t.name for t in SQLModel.metadata.tables.values() if "user_id" in t.c]


def check_row_level_security(
    cfg: Config,
    server: PgServer,
    declared: Mapping[str, Iterable[Policy]] | None = None,
    metadata: MetaData | None = None,
    app_role: str = APP_ROLE,
) -> None:
    """Every table with a user_id is protected at head, exactly as declared (see module doc)."""
    declared = ROW_LEVEL_SECURITY if declared is None else declared
    model_tables = (
        _models_with_user_id()
        if metadata is None
        else [t.name for t in metadata.tables.values() if "user_id" in t.c]
    )
    states: list[tuple[str, dict[str, DbTable]]] = []
    with server.database("rls") as name, bound(cfg, server, name) as conn:
        for rev in history(cfg):
            alembic_step(cfg, rev.revision)
            states.append((f"{rev.revision} ({Path(rev.path).name})", read_tables(conn)))
            conn.rollback()
        tables = states[-1][1] if states else {}
        findings: list[tuple[str, str | None, str]] = []
        for table, info in sorted(tables.items()):
            if info.has_user_id:
                findings += [(table, p, text) for p, text in rule_findings(table, info, app_role)]
        findings += declaration_findings(conn, tables, declared, model_tables)
        privileges = app_role_privileges(conn, app_role)
        conn.rollback()
    lines = []
    for table, policy, text in dict.fromkeys(findings):
        where = f"table {table}, policy {policy}" if policy else f"table {table}"
        lines.append(f"  - {where}: {text}{last_change(states, table, policy)}")
    lines += [f"  - {p}" for p in privileges]
    if lines:
        raise SchemaCheckError(
            f"Row-level security is missing, weakened or not as declared ({len(lines)} "
            "finding(s)): a user could read or change other users' rows.\n"
            + "\n".join(lines)
            + f"\nFix the revision (policies, FORCE, grants) or, for a deliberate change, "
            f"{DECLARATION} together with it."
        )
