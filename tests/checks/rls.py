"""13. Row-level security on every table the app role can touch, as models/policies.py
declares it.

    check_row_level_security(cfg, server)

After `alembic upgrade` one revision at a time on a fresh database, at head:
- every table on which the app role has any privilege (its own, PUBLIC's or a role's it
  is a member of), and every table with a user_id, has row-level security enabled AND
  forced;
- for each command the app role may run there, a permissive policy of the app role;
  every expression of those filters the rows: it compares user_id with the transaction's
  app.user_id, or reads a table (the parent) that is itself protected so;
- no policy that applies to the app role (or PUBLIC) is always true; an always-true
  policy is allowed only for the table's owner (migrations, backfills);
- the flags, the policies (in the database's own words) and the app role's grants, to
  the column, are exactly the declaration, in both directions (migrations/rls.py, the same
  comparison as `alembic check`); TRUNCATE, REFERENCES or TRIGGER, which row-level security
  does not restrict, are never declared;
- the app role has no privilege on anything but the declared tables (no sequence, no
  alembic_version), owns nothing, and its session defaults in this database are the
  declared ones (statement_timeout, ...).
Each finding names the table and the policy, and the revision that last changed it.
"""

from __future__ import annotations

import importlib
import itertools
import pkgutil
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from sqlalchemy import Connection, MetaData

from migrations.rls import DECLARATION, DbPolicy, compare, read_table
from models.policies import APP_ROLE, APP_ROLE_SETTINGS, COMMANDS, ROW_LEVEL_SECURITY, Access
from tests.checks.common import SchemaCheckError, alembic_step, bound, history
from tests.support import PgServer

USER_SETTING_CALL = "current_setting('app.user_id'"
_READS = re.compile(r"\bFROM\s+(?:\w+\.)?\"?(\w+)\"?", re.IGNORECASE)
# Which commands the role may run on each table: its own grants, PUBLIC's, its roles'.
_TABLES = sa.text(
    """
    SELECT c.relname, pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity,
           EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                   AND a.attname = 'user_id' AND NOT a.attisdropped),
           ARRAY(SELECT p FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                            'REFERENCES', 'TRIGGER']) p
                 WHERE has_table_privilege(:role, c.oid, p)
                    OR (p IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
                        AND has_any_column_privilege(:role, c.oid, p)))
    FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace
      AND c.relkind IN ('r', 'p') AND c.relname <> 'alembic_version'
    """
)


@dataclass(frozen=True)
class DbTable:
    """What row-level security looks like on one table."""

    owner: str
    has_user_id: bool
    enabled: bool
    forced: bool
    granted: frozenset[str]  # the commands the app role may run on it, however it got them
    policies: Mapping[str, DbPolicy]


def read_tables(conn: Connection, app_role: str) -> dict[str, DbTable]:
    """Every table of the current schema (alembic_version left out), with its policies."""
    policies: dict[str, dict[str, DbPolicy]] = {}
    for table, name, permissive, roles, cmd, using, check in conn.execute(
        sa.text(
            "SELECT tablename, policyname, permissive = 'PERMISSIVE', roles, cmd, qual, "
            "with_check FROM pg_policies WHERE schemaname = current_schema()"
        )
    ):
        policies.setdefault(table, {})[name] = DbPolicy(
            permissive, tuple(sorted(roles)), cmd, using, check
        )
    return {
        name: DbTable(owner, user_id, enabled, forced, frozenset(granted), policies.get(name, {}))
        for name, owner, enabled, forced, user_id, granted in conn.execute(
            _TABLES, {"role": app_role}
        )
    }


def other_privileges(conn: Connection, app_role: str) -> list[str]:
    """Findings: the app role's privileges on anything but tables (sequences, views, ...)
    and on alembic_version, and anything it owns."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, c.relkind, a.privilege_type, c.relowner = to_regrole(:role) "
            "FROM pg_class c LEFT JOIN LATERAL aclexplode(c.relacl) a "
            "ON a.grantee = to_regrole(:role) "
            "WHERE c.relnamespace = current_schema()::regnamespace"
        ),
        {"role": app_role},
    ).all()
    problems = set()
    for name, kind, privilege, owns in rows:
        if owns:
            problems.add(f"{name}: the app role {app_role} owns it (it must own nothing)")
        if privilege is not None and (name == "alembic_version" or kind not in "rp"):
            problems.add(f"{name}: the app role {app_role} has {privilege} on it")
    return sorted(problems)


def setting_findings(conn: Connection, app_role: str, declared: Mapping[str, str]) -> list[str]:
    """The app role's session defaults in this database against the declared ones."""
    found = conn.execute(
        sa.text(
            "SELECT unnest(setconfig) FROM pg_db_role_setting WHERE setrole = to_regrole(:role) "
            "AND setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"role": app_role},
    ).scalars()
    have = dict(item.split("=", 1) for item in found)
    problems = []
    for name in sorted(have.keys() | declared.keys()):
        if have.get(name) != declared.get(name):
            problems.append(
                f"the app role {app_role}'s {name} in this database is "
                f"{have.get(name, 'not set')}, {DECLARATION} says {declared.get(name, 'not set')}"
            )
    return problems


def _always_true(expression: str | None) -> bool:
    return expression is not None and expression.strip("() ").lower() == "true"


def _effective(policy: DbPolicy) -> list[tuple[str, str | None]]:
    """The expressions PostgreSQL applies for the policy's command: (label, SQL)."""
    using = ("USING", policy.using)
    check = ("WITH CHECK", policy.check if policy.check is not None else policy.using)
    return {"SELECT": [using], "DELETE": [using], "INSERT": [check]}.get(
        policy.command, [using, check]
    )


def _for_app(info: DbTable, app_role: str) -> dict[str, DbPolicy]:
    return {
        name: p
        for name, p in info.policies.items()
        if p.permissive and ({app_role, "public"} & set(p.roles))
    }


def filters(
    expression: str | None, tables: Mapping[str, DbTable], app_role: str, depth: int = 3
) -> bool:
    """The expression restricts rows to the user's: it compares user_id with app.user_id,
    or it reads a table under row-level security (forced) whose SELECT policies do."""
    if not expression:
        return False
    if USER_SETTING_CALL in expression and "user_id" in expression:
        return True
    for name in _READS.findall(expression):
        parent = tables.get(name)
        if depth and parent is not None and parent.enabled and parent.forced:
            selects = [
                p for p in _for_app(parent, app_role).values() if p.command in ("SELECT", "ALL")
            ]
            if selects and all(filters(p.using, tables, app_role, depth - 1) for p in selects):
                return True
    return False


def rule_findings(
    table: str, info: DbTable, tables: Mapping[str, DbTable], app_role: str
) -> list[tuple[str | None, str]]:
    """(policy name or None, finding) for one table the app role can touch (or with a user_id)."""
    found: list[tuple[str | None, str]] = []
    if not info.enabled:
        found.append((None, "row-level security is not enabled"))
    if not info.forced:
        found.append((None, "row-level security is not forced (the owner would skip it)"))
    for_app = _for_app(info, app_role)
    for name, policy in sorted(info.policies.items()):
        if not policy.permissive:
            continue
        for label, expression in _effective(policy):
            if _always_true(expression) and policy.roles != (info.owner,):
                whom = ", ".join(policy.roles)
                found.append((name, f"{label} is always true for {whom}: every row, every user"))
            elif name in for_app and not filters(expression, tables, app_role):
                found.append(
                    (
                        name,
                        f"{label} ({' '.join(str(expression).split())}) neither compares "
                        "user_id with app.user_id nor "
                        "reads a table under row-level security that does",
                    )
                )
    for command in sorted(info.granted, key=lambda c: (c not in COMMANDS, c)):
        if command not in COMMANDS:
            found.append(
                (None, f"the app role {app_role} has {command}, which row-level security ignores")
            )
        elif not any(p.command in (command, "ALL") for p in for_app.values()):
            found.append((None, f"no {command} policy for the app role {app_role}"))
    return found


def declaration_findings(
    conn: Connection,
    tables: Mapping[str, DbTable],
    declared: Mapping[str, Access],
    model_tables: Iterable[str],
    app_role: str,
) -> list[tuple[str, str | None, str]]:
    """(table, policy, finding) where the database and the declaration disagree."""
    found: list[tuple[str, str | None, str]] = []
    model_tables = set(model_tables)
    for table in sorted(model_tables - set(declared)):
        found.append((table, None, f"has a user_id in the models but no entry in {DECLARATION}"))
    for table in sorted(t for t, info in tables.items() if info.has_user_id):
        if table not in declared and table not in model_tables:
            found.append((table, None, f"has a user_id but no entry in {DECLARATION}"))
    for table in sorted(set(declared) - set(tables)):
        found.append((table, None, f"is declared in {DECLARATION}, not in the database"))
    for table in sorted(tables):
        difference = compare(
            conn,
            None,
            table,
            declared.get(table),
            read_table(conn, None, table, app_role),
            app_role,
        )
        found += [(table, p, text) for p, text in (difference.reasons if difference else [])]
    conn.rollback()
    return found


def last_change(states: list[tuple[str, dict[str, DbTable]]], table: str, key: str | None) -> str:
    """' (last changed by revision X)': the revision after which this table's policy (or,
    key None, its flags, grants and policy set) last looked different."""

    def view(tables: dict[str, DbTable]) -> Any:
        info = tables.get(table)
        if info is None:
            return None
        if key is None:
            return (info.enabled, info.forced, info.granted, tuple(sorted(info.policies)))
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
    declared: Mapping[str, Access] | None = None,
    metadata: MetaData | None = None,
    app_role: str = APP_ROLE,
    role_settings: Mapping[str, str] | None = None,
) -> None:
    """Every table the app role can touch is protected at head, exactly as declared (see
    module doc); `declared`, `metadata` and `role_settings` default to the project's."""
    declared = ROW_LEVEL_SECURITY if declared is None else declared
    role_settings = APP_ROLE_SETTINGS if role_settings is None else role_settings
    model_tables = (
        _models_with_user_id()
        if metadata is None
        else [t.name for t in metadata.tables.values() if "user_id" in t.c]
    )
    states: list[tuple[str, dict[str, DbTable]]] = []
    with server.database("rls") as name, bound(cfg, server, name) as conn:
        for rev in history(cfg):
            alembic_step(cfg, rev.revision)
            states.append((f"{rev.revision} ({Path(rev.path).name})", read_tables(conn, app_role)))
            conn.rollback()
        tables = states[-1][1] if states else {}
        findings: list[tuple[str, str | None, str]] = []
        for table, info in sorted(tables.items()):
            if info.has_user_id or info.granted or table in declared:
                findings += [
                    (table, p, text) for p, text in rule_findings(table, info, tables, app_role)
                ]
        findings += declaration_findings(conn, tables, declared, model_tables, app_role)
        others = other_privileges(conn, app_role) + setting_findings(conn, app_role, role_settings)
        conn.rollback()
    lines = []
    for table, policy, text in dict.fromkeys(findings):
        where = f"table {table}, policy {policy}" if policy else f"table {table}"
        lines.append(f"  - {where}: {text}{last_change(states, table, policy)}")
    lines += [f"  - {p}" for p in others]
    if lines:
        raise SchemaCheckError(
            f"Row-level security is missing, weakened or not as declared ({len(lines)} "
            "finding(s)): a user could read or change other users' rows.\n"
            + "\n".join(lines)
            + "\nFix the revision (policies, FORCE, grants, role settings) or, for a deliberate "
            f"change, {DECLARATION} together with it."
        )
