"""Row-level security in autogenerate: the declared policies, flags and grants compared with
the database, as Alembic compares columns, in both directions.

For every table autogenerate compares (ours: migrations/env.py's filters decide), the
declaration (models/policies.py's ROW_LEVEL_SECURITY, or a caller's own in
`metadata.info["row_level_security"]`) is compared with the database:
- the flags: a declared table has row-level security enabled and forced, any other table
  neither;
- the policies, by name, each in the database's own words (the declared one is created
  under a scratch name on a temporary copy of the table's columns, read from pg_policies,
  and rolled back: the table itself is only read, never locked against writers, so this
  is safe on a live database);
- the app role's privileges on the table and on each column (aclexplode), exactly.

What differs is one `RowLevelSecurity` operation in the table's operations, rendered as
`ops.enable_row_level_security(...)` for a table newly declared (its downgrade
`ops.disable_row_level_security(...)` with the same arguments), else as
`ops.alter_row_level_security(...)` with what to drop, create, revoke and grant (its
downgrade swaps them). `alembic check` states each difference in a sentence
(migrations/describe.py). env.py imports this module when it compares with the models,
and so does schema check 2, so all three see the same differences.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import comparators, renderers
from alembic.autogenerate.api import AutogenContext
from alembic.operations import MigrateOperation
from alembic.operations import ops as alembic_ops
from alembic.util import CommandError, PriorityDispatchResult
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

from migrations.ops import PolicyData, policy_sql
from models.policies import (
    APP_ROLE,
    ROW_LEVEL_SECURITY,
    TABLE_OWNER,
    Access,
    Policy,
    grant_list,
    privileges,
)

INFO_KEY = "row_level_security"
DECLARATION = "models/policies.py"
OPS_IMPORT = "from migrations import ops"
KIND = "row_level_security"  # the diff tuples' kind (migrations/describe.py)
INSUFFICIENT_PRIVILEGE = "42501"
_PREPARER = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]
_FLAGS = sa.text(
    "SELECT c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner) "
    "FROM pg_class c WHERE c.oid = to_regclass(:table)"
)
_POLICIES = sa.text(
    "SELECT policyname, permissive = 'PERMISSIVE', roles, cmd, qual, with_check "
    "FROM pg_policies WHERE schemaname = coalesce(:schema, current_schema()) "
    "AND tablename = :name"
)
# The role's own privileges on the table (column NULL) and on each of its columns.
_PRIVILEGES = sa.text(
    "SELECT a.privilege_type, NULL FROM pg_class c, aclexplode(c.relacl) a "
    "WHERE c.oid = to_regclass(:table) AND a.grantee = to_regrole(:role) "
    "UNION ALL SELECT a.privilege_type, att.attname FROM pg_attribute att, "
    "aclexplode(att.attacl) a WHERE att.attrelid = to_regclass(:table) "
    "AND NOT att.attisdropped AND a.grantee = to_regrole(:role)"
)


@dataclass(frozen=True)
class DbPolicy:
    """A policy as pg_policies prints it."""

    permissive: bool
    roles: tuple[str, ...]
    command: str
    using: str | None
    check: str | None

    def data(self, name: str, owner: str) -> dict[str, object]:
        """As plain data for a revision (the owner written as CURRENT_USER, as 0010 does)."""
        roles = [
            "CURRENT_USER" if r == owner else "PUBLIC" if r == "public" else r for r in self.roles
        ]
        found: dict[str, object] = {"name": name, "command": self.command}
        found["to"] = roles[0] if len(roles) == 1 else roles
        found.update({k: v for k, v in (("using", self.using), ("check", self.check)) if v})
        if not self.permissive:
            found["permissive"] = False
        return found


@dataclass(frozen=True)
class TableState:
    """Row-level security of one table in the database."""

    owner: str
    enabled: bool
    forced: bool
    policies: Mapping[str, DbPolicy]
    privileges: frozenset[tuple[str, str | None]]


def _qualified(schema: str | None, table: str) -> str:
    quote = _PREPARER.quote
    return f"{_PREPARER.quote_schema(schema)}.{quote(table)}" if schema else quote(table)


def read_table(bind: sa.Connection, schema: str | None, table: str, role: str) -> TableState | None:
    """The table's flags, policies and the role's privileges; None if there is no such table."""
    qualified = _qualified(schema, table)
    flags = bind.execute(_FLAGS, {"table": qualified}).first()
    if flags is None:
        return None
    policies = {
        name: DbPolicy(permissive, tuple(sorted(roles)), cmd, using, check)
        for name, permissive, roles, cmd, using, check in bind.execute(
            _POLICIES, {"schema": schema, "name": table}
        )
    }
    found = bind.execute(_PRIVILEGES, {"table": qualified, "role": role}).all()
    return TableState(flags[2], flags[0], flags[1], policies, frozenset((p, c) for p, c in found))


def policy_data(policy: Policy) -> dict[str, object]:
    """A declared policy as plain data for a revision (the owner: CURRENT_USER)."""
    found: dict[str, object] = {"name": policy.name, "command": policy.command}
    found["to"] = "CURRENT_USER" if policy.role == TABLE_OWNER else policy.role
    found.update({k: v for k, v in (("using", policy.using), ("check", policy.check)) if v})
    return found


def canonical(
    bind: sa.Connection, schema: str | None, table: str, policies: list[Policy], owner: str
) -> dict[str, DbPolicy | None]:
    """The declared policies in the database's words, by name: each created under a scratch
    name on a temporary copy of the table's columns (same name, so the policy's references
    to its table read the same; no lock on the table itself), read back from pg_policies,
    all rolled back. None for one that cannot be built on the table as it is now (e.g. it
    names a column this revision adds): then it differs."""
    found: dict[str, DbPolicy | None] = {}
    quoted = _PREPARER.quote(table)
    outer = bind.begin_nested()
    try:
        bind.exec_driver_sql(f"CREATE TEMPORARY TABLE {quoted} (LIKE {_qualified(schema, table)})")
        for policy in policies:
            data = {
                **policy_data(policy),
                "to": owner if policy.role == TABLE_OWNER else policy.role,
            }
            scratch = f"declared_{policy.name}"[:63]
            found[policy.name] = None
            with bind.begin_nested() as each:
                try:  # (psycopg2 formats the statement: a % in an expression is written %%)
                    sql = policy_sql(table, data, name=scratch, on=f"pg_temp.{quoted}")
                    bind.exec_driver_sql(sql.replace("%", "%%"))
                except DBAPIError:
                    each.rollback()
                    continue
                found[policy.name] = _scratch(bind, table, scratch)
    except DBAPIError as exc:
        if getattr(exc.orig, "pgcode", None) != INSUFFICIENT_PRIVILEGE:
            raise
        raise CommandError(
            f"table {table}: its declared policies cannot be compared as this role (it may not "
            "create temporary tables here): run this as the role that runs migrations"
        ) from None
    finally:
        outer.rollback()
    return found


def _scratch(bind: sa.Connection, table: str, name: str) -> DbPolicy | None:
    row = bind.execute(
        sa.text(
            "SELECT permissive = 'PERMISSIVE', roles, cmd, qual, with_check FROM pg_policies "
            "WHERE schemaname = (SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()) "
            "AND tablename = :t AND policyname = :n"
        ),
        {"t": table, "n": name},
    ).first()
    if row is None:
        return None
    permissive, roles, cmd, using, check = row
    return DbPolicy(permissive, tuple(sorted(roles)), cmd, using, check)


@dataclass
class RowLevelSecurity(MigrateOperation):
    """Change one table's row-level security (see ops.alter_row_level_security); `reasons`
    are the differences in words, (policy or None, sentence), for `alembic check`."""

    table: str
    role: str
    drop: list[PolicyData] = field(default_factory=list)
    create: list[PolicyData] = field(default_factory=list)
    revoke: list[str] = field(default_factory=list)
    grant: list[str] = field(default_factory=list)
    enable: bool | None = None
    force: bool | None = None
    reasons: list[tuple[str | None, str]] = field(default_factory=list)

    def reverse(self) -> RowLevelSecurity:
        def negate(flag: bool | None) -> bool | None:
            return None if flag is None else not flag

        return replace(
            self,
            drop=self.create,
            create=self.drop,
            revoke=self.grant,
            grant=self.revoke,
            enable=negate(self.enable),
            force=negate(self.force),
            reasons=[],
        )

    # A list of differences, as Alembic's own AlterColumnOp returns (flattened by describe.py).
    def to_diff_tuple(self) -> list[tuple[str, str, str]]:  # type: ignore[override]
        reasons = self.reasons or [(None, "row-level security changes")]
        return [(KIND, self.table, where(self.table, p) + text) for p, text in reasons]


def where(table: str, policy: str | None) -> str:
    """How a difference names its place: 'table t: ' or 'table t, policy p: '."""
    return f"table {table}, policy {policy}: " if policy else f"table {table}: "


def declaration(autogen_context: AutogenContext) -> Mapping[str, Access]:
    """The declared row-level security: the caller's (metadata.info), else the project's."""
    metadata = autogen_context.metadata
    given = metadata.info.get(INFO_KEY) if isinstance(metadata, sa.MetaData) else None
    return given if given is not None else ROW_LEVEL_SECURITY


def _flat(value: object) -> str:
    """A value on one line (PostgreSQL prints a subquery in a policy over several)."""
    return " ".join(str(value).split())


def _describe(have: DbPolicy, want: DbPolicy | None) -> list[str]:
    if want is None:
        return [f"differs from {DECLARATION} (whose policy cannot be built on the table as it is)"]
    return [
        f"{label}: the database has {_flat(getattr(have, attr))}, "
        f"{DECLARATION} {_flat(getattr(want, attr))}"
        for attr, label in (
            ("command", "the command"),
            ("permissive", "permissive"),
            ("roles", "the roles"),
            ("using", "USING"),
            ("check", "WITH CHECK"),
        )
        if getattr(have, attr) != getattr(want, attr)
    ]


def compare(
    bind: sa.Connection,
    schema: str | None,
    table: str,
    access: Access | None,
    have: TableState | None,
    role: str = APP_ROLE,
) -> RowLevelSecurity | None:
    """What turns the table's row-level security (None: a new table) into the declared one."""
    op = RowLevelSecurity(table, role)
    declared = access is not None
    enabled, forced = (have.enabled, have.forced) if have else (False, False)
    for flag, label, now in (("enable", "enabled", enabled), ("force", "forced", forced)):
        if now != declared:
            setattr(op, flag, declared)
            state = "is not" if declared else "is"
            also = (
                f"{DECLARATION} declares it" if declared else f"it is not declared in {DECLARATION}"
            )
            op.reasons.append((None, f"row-level security {state} {label}; {also}"))
    wanted = {p.name: p for p in (access.policies if access else ())}
    found = have.policies if have else {}
    for name in sorted(set(found) - set(wanted)):
        op.drop.append(found[name].data(name, have.owner if have else ""))
        op.reasons.append((name, f"is in the database, not in {DECLARATION}"))
    present = [p for name, p in wanted.items() if name in found]
    built = canonical(bind, schema, table, present, have.owner) if have and present else {}
    for name, policy in wanted.items():
        if name not in found:
            op.create.append(policy_data(policy))
            op.reasons.append((name, f"is declared in {DECLARATION}, not in the database"))
            continue
        assert have is not None
        if built[name] != found[name]:
            op.drop.append(found[name].data(name, have.owner))
            op.create.append(policy_data(policy))
            op.reasons += [(name, text) for text in _describe(found[name], built[name])]
    want = privileges(access.grants) if access else frozenset()
    got = have.privileges if have else frozenset()
    op.revoke, op.grant = grant_list(got - want), grant_list(want - got)
    for grant in op.revoke:
        op.reasons.append((None, f"the app role {role} has {grant}, not declared in {DECLARATION}"))
    for grant in op.grant:
        op.reasons.append((None, f"the app role {role} lacks {grant}, declared in {DECLARATION}"))
    return op if op.reasons else None


@comparators.dispatch_for("table", qualifier="postgresql")
def compare_row_level_security(
    autogen_context: AutogenContext,
    modify_table_ops: alembic_ops.ModifyTableOps,
    schema: str | None,
    tname: str,
    conn_table: sa.Table | None,
    metadata_table: sa.Table | None,
) -> PriorityDispatchResult:
    """The table's row-level security as declared, or a RowLevelSecurity op that makes it so."""
    bind = autogen_context.connection
    if bind is None:
        return PriorityDispatchResult.CONTINUE
    access = declaration(autogen_context).get(tname) if metadata_table is not None else None
    have = read_table(bind, schema, tname, APP_ROLE) if conn_table is not None else None
    found = compare(bind, schema, tname, access, have)
    if found is not None:
        modify_table_ops.ops.append(found)
    return PriorityDispatchResult.CONTINUE


# Alembic indents a rendered operation by 4 in upgrade(): lines stay within the project's
# 100 columns (ruff), whatever the length of a policy's expression.
WIDTH = 100 - 4


def _string(text: str, column: int, indent: int) -> str:
    """A string literal starting at `column`; too long, implicitly concatenated pieces in
    parentheses, each on a line of its own (the form ruff format keeps)."""
    if column + len(repr(text)) + 1 <= WIDTH:
        return repr(text)
    room = max(WIDTH - indent - 4 - 2, 20)
    pieces, piece = [], ""
    for word in re.findall(r"\S+\s*|\s+", text):
        if piece and len(repr(piece + word)) - 2 > room:
            pieces.append(piece)
            piece = ""
        piece += word
    pieces.append(piece)
    inner = "".join(f"{' ' * (indent + 4)}{p!r}\n" for p in pieces)
    return f"(\n{inner}{' ' * indent})"


def _py(value: Any, column: int, indent: int) -> str:
    """value (str, dict, list, bool) as Python source starting at `column`, its closing
    bracket at `indent`: one item per line, as ruff format writes it."""
    if isinstance(value, str):
        return _string(value, column, indent)
    if isinstance(value, dict):
        pad = " " * (indent + 4)
        items = [
            f"{pad}{k!r}: {_py(v, indent + 6 + len(repr(k)), indent + 4)},\n"
            for k, v in value.items()
        ]
        return "{\n" + "".join(items) + " " * indent + "}"
    if isinstance(value, list):
        items = [f"{' ' * (indent + 4)}{_py(v, indent + 4, indent + 4)},\n" for v in value]
        return "[\n" + "".join(items) + " " * indent + "]"
    return repr(value)


def _call(helper: str, table: str, args: list[tuple[str | None, Any]]) -> str:
    """ops.<helper>(table, [name=]value, ...), one argument per line."""
    lines = [f"ops.{helper}(\n    {table!r},\n"]
    for name, value in args:
        prefix = f"{name}=" if name else ""
        lines.append(f"    {prefix}{_py(value, 4 + len(prefix), 4)},\n")
    return "".join(lines) + ")"


@renderers.dispatch_for(RowLevelSecurity)
def render(autogen_context: AutogenContext, op: RowLevelSecurity) -> str:
    """`ops.enable_row_level_security(...)`, its inverse, or `ops.alter_row_level_security(...)`."""
    autogen_context.imports.add(OPS_IMPORT)
    whole_on = op.enable and op.force and not op.drop and not op.revoke
    whole_off = op.enable is False and op.force is False and not op.create and not op.grant
    if whole_on:
        return _call(
            "enable_row_level_security",
            op.table,
            [(None, op.create), (None, op.grant), ("to", op.role)],
        )
    if whole_off:
        return _call(
            "disable_row_level_security",
            op.table,
            [(None, op.drop), (None, op.revoke), ("to", op.role)],
        )
    args: list[tuple[str | None, Any]] = [("to", op.role)]
    for name, value in (
        ("drop_policies", op.drop),
        ("create_policies", op.create),
        ("revoke", op.revoke),
        ("grant", op.grant),
        ("enable", op.enable),
        ("force", op.force),
    ):
        if value not in ([], None):
            args.append((name, value))
    return _call("alter_row_level_security", op.table, args)
