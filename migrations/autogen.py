"""What `alembic revision --autogenerate` writes: the safe form of each ordinary change.

env.py's process_revision_directives hands the compared operations to `rewrite()`, which
turns them into revisions that apply on a live table with rows:

- an index on an existing table: `ops.create_index_concurrently` / `drop_index_concurrently`;
- a foreign key, or the CHECK of an enum column, on an existing table: added `NOT VALID`
  (a brief lock, no scan), then `ops.validate_constraint` in the next revision, whose
  downgrade drops it and adds it back `NOT VALID` with its definition written out (as
  the revision before left it; works with --sql too);
- a varchar enum column (`sa.Enum(..., native_enum=False, create_constraint=True,
  name=...)`) on an existing table: a varchar column, then its named CHECK as above;
- a native PostgreSQL enum column (`sa.Enum(..., name=...)`), on an existing or a new
  table: `op.execute("CREATE TYPE ...")` first when the type is new, the column as
  `postgresql.ENUM(..., create_type=False)`, and the downgrade drops the type after the
  column (migrations/enums.py);
- a value added to a varchar enum: the varchar widens if needed, and the CHECK, which
  autogenerate does not compare, is replaced `NOT VALID`, then validated;
- a value added to a native enum (seen by migrations/enums.py's comparator): a revision
  of `ops.add_enum_value` steps that runs first; a value removed or moved: refused;
- NULL -> NOT NULL on an existing column: a `CHECK (col IS NOT NULL) NOT VALID`, then
  `ops.set_not_null` in the next revision (SET NOT NULL then skips its scan);
- a new NOT NULL column on an existing table without a server default: refused;
- a varchar widening: kept, with its reviewed lint exception declared in the revision.

What a reviewer must not miss is written above the operation, and said while it runs:

- every operation that loses stored data (a dropped table or column, a narrowing type
  change, a removed enum value), in upgrade() or downgrade(), gets a `# DESTRUCTIVE:`
  comment saying what and how the data-loss guard stops it (migrations/dataloss.py); in
  upgrade() a warning line too;
- a new table whose id is SERIAL or integer gets a `# FIX:` comment and a warning with the
  one-line model fix (models/base.py's TableBase, or a bigint identity column);
- a new table whose updated_at the database sets (`server_onupdate=sa.FetchedValue()`, as
  TableBase gives it) gets its trigger, `ops.create_updated_at_trigger`, after CREATE
  TABLE (and `ops.drop_updated_at_trigger` before DROP TABLE, also for a removed table
  that has one).

A revision either runs in one transaction or is made of rerunnable autocommit steps
(migrations/ops.py), never both: one autogenerate run writes up to five chained
revisions, in this order: enum values (steps), index drops (steps), the transactional
changes, the validations (a later transaction), index builds (steps). Tables created in
the same run keep plain operations (they are empty). env.py imports this module when it
compares with the models.
"""

from __future__ import annotations

import logging
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from alembic.autogenerate import renderers
from alembic.autogenerate.api import AutogenContext
from alembic.autogenerate.render import render_op
from alembic.operations import MigrateOperation
from alembic.operations import ops as alembic_ops
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex
from sqlalchemy.sql.elements import conv

import migrations.rls  # noqa: F401  (registers the row-level security comparator)
from migrations.dataloss import FLAG, narrows, shape
from migrations.enums import (
    OPS_IMPORT,
    AddEnumValue,
    CreateEnumType,
    database_enums,
    is_native,
)
from migrations.ops import UPDATED_AT_FUNCTION, not_null_check_name, updated_at_trigger_name

log = logging.getLogger("models")
CONVENTION = "see docs/workflow.md"
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


# ---------------------------------------------------------------- the online steps


class CreateIndexConcurrently(MigrateOperation):
    """`ops.create_index_concurrently(...)` in a revision (wraps Alembic's CreateIndexOp)."""

    def __init__(self, index: alembic_ops.CreateIndexOp) -> None:
        self.index = index

    def reverse(self) -> MigrateOperation:
        return DropIndexConcurrently(self.index.reverse())


class DropIndexConcurrently(MigrateOperation):
    """`ops.drop_index_concurrently(...)` in a revision (wraps Alembic's DropIndexOp)."""

    def __init__(self, index: alembic_ops.DropIndexOp) -> None:
        self.index = index

    def reverse(self) -> MigrateOperation:
        return CreateIndexConcurrently(self.index.reverse())


NotValid = alembic_ops.CreateCheckConstraintOp | alembic_ops.CreateForeignKeyOp


class ValidateConstraint(MigrateOperation):
    """`ops.validate_constraint(table, name)`; reversed, the constraint back to NOT VALID.

    `added` is the operation of the earlier revision that added it `NOT VALID`: PostgreSQL
    cannot mark a constraint not valid again, so the downgrade drops it and renders that
    operation once more (the definition written out: no database needed, --sql works).
    """

    def __init__(self, added: NotValid, undo: bool = False) -> None:
        assert added.kw.get("postgresql_not_valid"), "validated: a constraint added NOT VALID"
        self.added, self.undo, self.name = added, undo, str(added.constraint_name)
        if isinstance(added, alembic_ops.CreateCheckConstraintOp):
            self.table, self.schema, self.kind = added.table_name, added.schema, "check"
        else:
            schema = added.kw.get("source_schema")
            self.table, self.schema, self.kind = added.source_table, schema, "foreignkey"

    def reverse(self) -> MigrateOperation:
        return ValidateConstraint(self.added, undo=not self.undo)

    def drop(self) -> alembic_ops.DropConstraintOp:
        """The DROP CONSTRAINT that comes before adding it again NOT VALID."""
        return alembic_ops.DropConstraintOp(
            self.added.constraint_name, self.table, type_=self.kind, schema=self.schema
        )


class SetNotNull(MigrateOperation):
    """`ops.set_not_null(table, column)`, or `ops.drop_not_null` when reversed."""

    def __init__(self, table: str, column: str, drop: bool = False) -> None:
        self.table, self.column, self.drop = table, column, drop

    def reverse(self) -> MigrateOperation:
        return SetNotNull(self.table, self.column, drop=not self.drop)


def _index_sql(index: alembic_ops.CreateIndexOp) -> tuple[str, str | None]:
    """(the SQL inside the index's parentheses, its WHERE clause or None)."""
    built = index.to_index()
    where = built.dialect_options["postgresql"].get("where")
    plain = sa.Index(built.name, *built.expressions)
    plain._set_parent(built.table)  # type: ignore[arg-type]
    sql = str(CreateIndex(plain).compile(dialect=_PG))
    built.table.indexes.discard(plain)  # type: ignore[union-attr]
    after_on = sql.split(" ON ", 1)[1]
    columns = after_on[after_on.index("(") + 1 : after_on.rindex(")")]
    if where is None or isinstance(where, str):
        return columns, where
    return columns, str(where.compile(dialect=_PG, compile_kwargs={"literal_binds": True}))


@renderers.dispatch_for(CreateIndexConcurrently)
def _render_create(autogen_context: AutogenContext, op: CreateIndexConcurrently) -> str:
    autogen_context.imports.add(OPS_IMPORT)
    columns, where = _index_sql(op.index)
    args = [repr(op.index.index_name), repr(op.index.table_name), repr(columns)]
    if op.index.unique:
        args.append("unique=True")
    if where:
        args.append(f"where={where!r}")
    return f"ops.create_index_concurrently({', '.join(args)})"


@renderers.dispatch_for(DropIndexConcurrently)
def _render_drop(autogen_context: AutogenContext, op: DropIndexConcurrently) -> str:
    autogen_context.imports.add(OPS_IMPORT)
    return f"ops.drop_index_concurrently({op.index.index_name!r})"


@renderers.dispatch_for(ValidateConstraint)
def _render_validate(autogen_context: AutogenContext, op: ValidateConstraint) -> list[str]:
    if op.undo:
        return [
            f"# {op.name} back to NOT VALID, as the previous revision added it",
            *render_op(autogen_context, op.drop()),
            *render_op(autogen_context, op.added),
        ]
    autogen_context.imports.add(OPS_IMPORT)
    return [f"ops.validate_constraint({op.table!r}, {op.name!r})"]


@renderers.dispatch_for(SetNotNull)
def _render_not_null(autogen_context: AutogenContext, op: SetNotNull) -> str:
    autogen_context.imports.add(OPS_IMPORT)
    helper = "drop_not_null" if op.drop else "set_not_null"
    return f"ops.{helper}({op.table!r}, {op.column!r})"


class UpdatedAtTrigger(MigrateOperation):
    """`ops.create_updated_at_trigger(table)`, or `ops.drop_updated_at_trigger` reversed."""

    def __init__(self, table: str, drop: bool = False) -> None:
        self.table, self.drop = table, drop

    def reverse(self) -> MigrateOperation:
        return UpdatedAtTrigger(self.table, drop=not self.drop)


@renderers.dispatch_for(UpdatedAtTrigger)
def _render_trigger(autogen_context: AutogenContext, op: UpdatedAtTrigger) -> str:
    autogen_context.imports.add(OPS_IMPORT)
    helper = "drop_updated_at_trigger" if op.drop else "create_updated_at_trigger"
    return f"ops.{helper}({op.table!r})"


class Commented(MigrateOperation):
    """An operation written below a comment the reviewer cannot miss (`# DESTRUCTIVE: ...`,
    `# FIX: ...`); reversed, the operation's own reverse."""

    def __init__(self, op: MigrateOperation, label: str, text: str) -> None:
        self.op, self.label, self.text = op, label, text

    def reverse(self) -> MigrateOperation:
        return self.op.reverse()


COMMENT_WIDTH = 88  # + "# " and the body's indent: within the project's line length


@renderers.dispatch_for(Commented)
def _render_commented(autogen_context: AutogenContext, op: Commented) -> list[str]:
    text = f"{op.label}: {op.text}".replace(FLAG, FLAG.replace(" ", "\0"))  # one piece
    lines = textwrap.wrap(text, width=COMMENT_WIDTH, break_long_words=False)
    comment = [f"# {line}".replace("\0", " ") for line in lines]
    return [*comment, *render_op(autogen_context, op.op)]


def destructive(item: MigrateOperation) -> str | None:
    """What an operation destroys, and how the data-loss guard stops it (None: nothing)."""
    if isinstance(item, alembic_ops.DropTableOp):
        return (
            f"drops table {item.table_name} and its rows; refuses while it holds rows unless {FLAG}"
        )
    if isinstance(item, alembic_ops.DropColumnOp):
        return (
            f"drops column {item.table_name}.{item.column_name} and its values; refuses while "
            f"rows hold values unless {FLAG}"
        )
    if isinstance(item, alembic_ops.AlterColumnOp) and narrows(
        item.existing_type, item.modify_type
    ):
        assert item.existing_type is not None and item.modify_type is not None
        old, new = (t.compile(dialect=_PG) for t in (item.existing_type, item.modify_type))
        return (
            f"narrows column {item.table_name}.{item.column_name} from {old} to {new}; "
            f"refuses while values do not fit unless {FLAG} (which cuts or rounds them)"
        )
    if isinstance(item, AddEnumValue) and item.undo:
        return (
            f"removes value {item.value!r} from enum type {item.name}; refuses while rows hold "
            f"it, even with {FLAG}: UPDATE them first"
        )
    return None


def mark_destructive(container: alembic_ops.OpContainer, warn: bool) -> None:
    """Put a `# DESTRUCTIVE:` comment above each operation that loses data (and, for an
    upgrade, say it now in a warning line)."""
    for n, item in enumerate(container.ops):
        if isinstance(item, alembic_ops.OpContainer):
            mark_destructive(item, warn)
            continue
        text = destructive(item)
        if text is None:
            continue
        container.ops[n] = Commented(item, "DESTRUCTIVE", text)
        if warn:
            log.warning("DESTRUCTIVE: the revision %s (marked in the file: review it).", text)


MODEL_FIX = (
    "inherit models.base.TableBase (or TenantTableBase), or declare "
    "`id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, "
    "sa.Identity(always=True), primary_key=True))`"
)


def serial_id(table: sa.Table) -> str | None:
    """`<table>.<id> is SERIAL (...)` when a new table's id is not a bigint identity."""
    keys = list(table.primary_key.columns)
    found = shape(keys[0].type) if len(keys) == 1 else None
    if found is None or found[0] != "integer":
        return None
    column, bits = keys[0], found[1]
    serial = (
        column.identity is None
        and column.server_default is None
        and column.autoincrement in (True, "auto")
    )
    if bits == 64 and not serial:
        return None
    kind = {16: "SMALLSERIAL", 32: "SERIAL", 64: "BIGSERIAL"}[bits] if serial else None
    rules = ["prefer-bigint-over-int"] if bits < 64 else []
    rules += ["prefer-identity"] if serial else []
    return (
        f"{table.name}.{column.name} is {kind or column.type.compile(dialect=_PG)} "
        f"(the lint, check 8, refuses it: {', '.join(rules)})"
    )


def updated_at_by_trigger(table: sa.Table) -> bool:
    """A new table whose updated_at the database sets on UPDATE (server_onupdate), with a
    created_at to keep: TableBase's columns."""
    updated = table.c.get("updated_at")
    return updated is not None and updated.server_onupdate is not None and "created_at" in table.c


def has_updated_at_trigger(bind: sa.Connection | None, table: str) -> bool:
    """The table has the shared updated_at trigger in the database (so a DROP TABLE's
    downgrade must create it again)."""
    if bind is None:
        return False
    query = sa.text(
        "SELECT EXISTS (SELECT FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE c.relname = :table AND c.relnamespace = current_schema()::regnamespace "
        "AND t.tgname = :name AND t.tgfoid = to_regprocedure(:function))"
    )
    found = bind.execute(
        query,
        {
            "table": table,
            "name": updated_at_trigger_name(table),
            "function": f"{UPDATED_AT_FUNCTION}()",
        },
    )
    return bool(found.scalar())


def _create_table(plan: Plan, upgrade_ops: alembic_ops.UpgradeOps, item: MigrateOperation) -> None:
    """A new table: its enum types first, a FIX comment on a SERIAL/integer id, its
    updated_at trigger after it."""
    assert isinstance(item, alembic_ops.CreateTableOp)
    table = item.to_table()
    for column in table.columns:
        ensure_type(plan, column)
    _warn_unindexed_foreign_keys(upgrade_ops, table)
    serial = serial_id(table)
    if serial is None:
        plan.main.append(item)
    else:
        log.warning("%s. In the model: %s; then autogenerate again.", serial, MODEL_FIX)
        plan.main.append(Commented(item, "FIX", f"{serial}. In the model: {MODEL_FIX}."))
    if updated_at_by_trigger(table):
        plan.main.append(UpdatedAtTrigger(table.name))


LONG_CHECK = 60  # a CHECK's SQL longer than this is written in parts, one per line
_PIECE = re.compile(r"\\u[0-9a-fA-F]{4}|.", re.DOTALL)


def render_check(constraint: sa.CheckConstraint) -> str | Literal[False]:
    """A CHECK in CREATE TABLE whose SQL is too long for a line (the tenant tables'
    not-blank CHECK), as string parts Python joins, so the revision keeps the project's
    line length; False: Alembic's own rendering (called from env.py's render_item)."""
    sql, name = constraint.sqltext, constraint.name
    if not isinstance(sql, sa.TextClause) or len(sql.text) <= LONG_CHECK or not name:
        return False
    if any(isinstance(c.type, sa.Enum | sa.Boolean) for c in constraint.columns):
        return False  # an Enum's or a Boolean's own CHECK: rendered with its type
    parts, current = [], ""
    for piece in _PIECE.findall(sql.text):  # never split an escape such as \u0009
        if len(current) + len(piece) > 48:
            parts.append(current)
            current = ""
        current += piece
    parts.append(current)
    rendered_name = f"op.f({str(name)!r})" if isinstance(name, conv) else repr(str(name))
    return f"sa.CheckConstraint({' '.join(map(repr, parts))}, name={rendered_name})"


# ------------------------------------------------------------------ the rewrite


@dataclass
class Plan:
    """The operations of one autogenerate run, sorted into up to five revisions."""

    bind: sa.Connection | None = None
    values: list[MigrateOperation] = field(default_factory=list)  # online: ADD VALUE
    before: list[MigrateOperation] = field(default_factory=list)  # online: index drops
    main: list[MigrateOperation] = field(default_factory=list)  # one transaction
    validate: list[MigrateOperation] = field(default_factory=list)  # a later transaction
    after: list[MigrateOperation] = field(default_factory=list)  # online: index builds
    # schema_check_exceptions of the main and of the validating revision (check id -> reason)
    main_exceptions: dict[str, str] = field(default_factory=dict)
    validate_exceptions: dict[str, str] = field(default_factory=dict)
    # native enum types that exist (in the database, or created earlier in main)
    types: set[tuple[str | None, str]] = field(default_factory=set)
    known: dict[str | None, set[str]] = field(default_factory=dict)

    @staticmethod
    def except_(exceptions: dict[str, str], check: str, reason: str) -> None:
        """Declare a reviewed exception to one check, with its reason, in one revision."""
        exceptions[check] = f"{exceptions[check]}; {reason}" if check in exceptions else reason


def ensure_type(plan: Plan, column: sa.Column[Any]) -> None:
    """A native enum column's type: CREATE TYPE in main, before the first column using it,
    unless the database has it already (then the column only uses it)."""
    type_ = column.type
    if not is_native(type_):
        return
    assert isinstance(type_, sa.Enum)
    key = (type_.schema, str(type_.name))
    if key in plan.types:
        return
    plan.types.add(key)
    if type_.schema not in plan.known:
        found = database_enums(plan.bind, type_.schema) if plan.bind is not None else {}
        plan.known[type_.schema] = set(found)
    if key[1] not in plan.known[type_.schema]:
        plan.main.append(CreateEnumType(type_))


def _enum_check(column: sa.Column[Any]) -> sa.CheckConstraint | None:
    """The named CHECK a non-native enum column brings along (None: it brings none)."""
    type_ = column.type
    if not isinstance(type_, sa.Enum) or type_.native_enum or not type_.create_constraint:
        return None
    for constraint in column.table.constraints:
        if not isinstance(constraint, sa.CheckConstraint):
            continue
        if getattr(constraint, "_type_bound", False) and column in list(constraint.columns):
            return constraint
    return None


def _check_sql(check: sa.CheckConstraint) -> str:
    """The CHECK's expression as CREATE TABLE writes it (columns unqualified, values inline)."""
    compiler = _PG.ddl_compiler(_PG, None).sql_compiler  # type: ignore[arg-type]
    return str(compiler.process(check.sqltext, include_table=False, literal_binds=True))


def _add_column(plan: Plan, op: alembic_ops.AddColumnOp, ops_: list[MigrateOperation]) -> None:
    column, table = op.column, op.table_name
    ensure_type(plan, column)
    if (
        not column.nullable
        and column.server_default is None
        and column.identity is None
        and column.computed is None
    ):
        raise CommandError(
            f"column {table}.{column.name} is NOT NULL without a server default, and {table} "
            "may hold rows: give it one in the model (e.g. sa_column_kwargs={'server_default': "
            "...}), or add it nullable, backfill it, then make it NOT NULL "
            f"({CONVENTION}); then autogenerate again"
        )
    check = _enum_check(column)
    if check is None:
        ops_.append(op)
        return
    assert isinstance(column.type, sa.Enum)
    default = column.server_default
    plain = sa.Column(
        column.name,
        sa.String(length=column.type.length),
        nullable=column.nullable,
        server_default=getattr(default, "arg", None),
        comment=column.comment,
    )
    expression = _check_sql(check)
    added = alembic_ops.CreateCheckConstraintOp(
        check.name, table, sa.text(expression), schema=op.schema, postgresql_not_valid=True
    )
    ops_.append(alembic_ops.AddColumnOp(table, plain, schema=op.schema))
    ops_.append(added)
    plan.validate.append(ValidateConstraint(added))


def _literals(sql: str) -> set[str]:
    """The quoted values in a CHECK as PostgreSQL prints it (an enum's allowed values)."""
    return {value.replace("''", "'") for value in re.findall(r"'((?:[^']|'')*)'", sql)}


def _enum_value_changes(
    plan: Plan, metadata: sa.MetaData, bind: sa.Connection, new: set[str]
) -> None:
    """An enum column whose values changed (autogenerate compares no CHECK): its CHECK is
    replaced NOT VALID, then validated by the next revision."""
    inspector = sa.inspect(bind)
    for table in metadata.sorted_tables:
        if table.name in new or not inspector.has_table(table.name, schema=table.schema):
            continue
        found = {
            str(c["name"]): str(c["sqltext"])
            for c in inspector.get_check_constraints(table.name, schema=table.schema)
        }
        ops_: list[MigrateOperation] = []
        for column in table.columns:
            check = _enum_check(column)
            name = str(check.name) if check is not None else ""
            if check is None or name not in found:
                continue  # no enum, or a new column (its CHECK comes with it)
            assert isinstance(column.type, sa.Enum)
            if set(column.type.enums) == _literals(found[name]):
                continue
            old = alembic_ops.CreateCheckConstraintOp(
                check.name, table.name, sa.text(found[name]), schema=table.schema
            )
            ops_.append(alembic_ops.DropConstraintOp.from_constraint(old.to_constraint()))
            added = alembic_ops.CreateCheckConstraintOp(
                check.name,
                table.name,
                sa.text(_check_sql(check)),
                schema=table.schema,
                postgresql_not_valid=True,
            )
            ops_.append(added)
            plan.validate.append(ValidateConstraint(added))
        if ops_:
            plan.main.append(alembic_ops.ModifyTableOps(table.name, ops_, schema=table.schema))


def _is_widening(op: alembic_ops.AlterColumnOp) -> bool:
    # Through a TypeDecorator (sqlmodel's AutoString) to the type it stores as.
    old, new = (getattr(t, "impl_instance", t) for t in (op.existing_type, op.modify_type))
    if not isinstance(old, sa.String) or not isinstance(new, sa.String):
        return False
    if isinstance(old, (sa.CHAR, sa.Enum)) or isinstance(new, (sa.CHAR, sa.Enum)):
        return False
    return old.length is not None and (new.length is None or new.length > old.length)


def _alter_column(plan: Plan, op: alembic_ops.AlterColumnOp, ops_: list[MigrateOperation]) -> None:
    where = f"{op.table_name}.{op.column_name}"
    if op.modify_type is not None and (is_native(op.modify_type) or is_native(op.existing_type)):
        old, new = (getattr(t, "name", None) for t in (op.existing_type, op.modify_type))
        if not (is_native(op.modify_type) and is_native(op.existing_type) and old == new):
            raise CommandError(
                f"column {where} changes its type to or from a native enum: write that "
                "revision by hand (CREATE TYPE, ALTER COLUMN ... TYPE <type> USING "
                f"{op.column_name}::text::<type>, a rewrite under ACCESS EXCLUSIVE: or "
                f"expand/contract with a new column; {CONVENTION})"
            )
        op.modify_type = None  # the same type: its values are compared in migrations/enums.py
        unchanged = op.modify_server_default is False and op.modify_comment is False
        if op.modify_nullable is None and unchanged and not op.modify_name:
            return
    if isinstance(op.modify_type, sa.Enum) and not op.modify_type.native_enum:
        # A longer enum value: only the varchar widens (its CHECK: _enum_value_changes).
        op.modify_type = sa.String(length=op.modify_type.length)
    if op.modify_nullable is False and op.existing_nullable is not False:
        name = not_null_check_name(op.table_name, op.column_name)
        ops_.append(
            alembic_ops.CreateCheckConstraintOp(
                sa.sql.elements.conv(name),
                op.table_name,
                sa.text(f"{op.column_name} IS NOT NULL"),
                schema=op.schema,
                postgresql_not_valid=True,
            )
        )
        plan.validate.append(SetNotNull(op.table_name, op.column_name))
        plan.except_(
            plan.validate_exceptions,
            "lint:ban-drop-constraint",
            f"{where}: ops.set_not_null drops only its own {name}, now replaced by NOT NULL",
        )
        op.modify_nullable = None
        unchanged = op.modify_server_default is False and op.modify_comment is False
        if op.modify_type is None and unchanged and not op.modify_name:
            return
    if op.modify_type is not None and _is_widening(op):
        assert op.existing_type is not None
        old, new = (t.compile(dialect=_PG) for t in (op.existing_type, op.modify_type))
        plan.except_(
            plan.main_exceptions,
            "lint:changing-column-type",
            f"{where} {old} -> {new}: widening a varchar changes only the catalog "
            "(no rewrite, no scan; a brief lock bounded by lock_timeout)",
        )
    ops_.append(op)


def _modify(plan: Plan, container: alembic_ops.ModifyTableOps, new: set[str]) -> None:
    """Sort one existing table's operations (a table created or dropped here keeps them all
    plain: it is empty, or goes with its indexes)."""
    table = container.table_name
    if table in new:
        for item in container.ops:
            if isinstance(item, alembic_ops.AddColumnOp):
                ensure_type(plan, item.column)
        plan.main.append(container)
        return
    ops_: list[MigrateOperation] = []
    for item in container.ops:
        if isinstance(item, alembic_ops.CreateIndexOp):
            plan.after.append(CreateIndexConcurrently(item))
        elif isinstance(item, alembic_ops.DropIndexOp):
            plan.before.append(DropIndexConcurrently(item))
        elif isinstance(item, alembic_ops.CreateForeignKeyOp):
            item.kw["postgresql_not_valid"] = True
            ops_.append(item)
            plan.validate.append(ValidateConstraint(item))
        elif isinstance(item, alembic_ops.AddColumnOp):
            _add_column(plan, item, ops_)
        elif isinstance(item, alembic_ops.AlterColumnOp):
            _alter_column(plan, item, ops_)
        else:
            ops_.append(item)
    if ops_:
        plan.main.append(alembic_ops.ModifyTableOps(table, ops_, schema=container.schema))


def _first_columns(upgrade_ops: alembic_ops.UpgradeOps, table: sa.Table) -> set[str]:
    """The leading column of every index and key that a new table gets in this revision."""
    leading = {
        str(c.columns[0].name)
        for c in table.constraints
        if isinstance(c, sa.UniqueConstraint | sa.PrimaryKeyConstraint) and c.columns
    }
    for item in upgrade_ops.ops:
        if isinstance(item, alembic_ops.ModifyTableOps) and item.table_name == table.name:
            for index in item.ops:
                if isinstance(index, alembic_ops.CreateIndexOp) and index.columns:
                    first = index.columns[0]
                    leading.add(str(getattr(first, "name", first)))
    return leading


def _warn_unindexed_foreign_keys(upgrade_ops: alembic_ops.UpgradeOps, table: sa.Table) -> None:
    """The convention: a foreign key column gets an index (index=True in the model)."""
    leading = _first_columns(upgrade_ops, table)
    for fk in table.foreign_key_constraints:
        column = fk.column_keys[0]
        if column not in leading:
            log.warning(
                "%s.%s references %s but has no index: deleting or updating a %s row scans "
                "%s; give the column index=True in the model (%s).",
                table.name,
                column,
                fk.referred_table.name,
                fk.referred_table.name,
                table.name,
                CONVENTION,
            )


def plan(
    upgrade_ops: alembic_ops.UpgradeOps, metadata: sa.MetaData | None, bind: sa.Connection | None
) -> Plan:
    """Sort autogenerate's operations into the revisions that apply them safely."""
    new = {op.table_name for op in upgrade_ops.ops if isinstance(op, alembic_ops.CreateTableOp)}
    new |= {op.table_name for op in upgrade_ops.ops if isinstance(op, alembic_ops.DropTableOp)}
    result = Plan(bind=bind)
    for item in upgrade_ops.ops:
        if isinstance(item, AddEnumValue):
            result.values.append(item)
            continue
        if isinstance(item, alembic_ops.ModifyTableOps):
            _modify(result, item, new)
            continue
        if isinstance(item, alembic_ops.CreateTableOp):
            _create_table(result, upgrade_ops, item)
            continue
        if isinstance(item, alembic_ops.DropTableOp) and has_updated_at_trigger(
            bind, item.table_name
        ):
            result.main.append(UpdatedAtTrigger(item.table_name, drop=True))
        result.main.append(item)
    if metadata is not None and bind is not None:
        _enum_value_changes(result, metadata, bind, new)
    return result


def render_exceptions(exceptions: dict[str, str]) -> str:
    """The module-level declaration, each reason wrapped to fit the project's line length."""
    lines = ["schema_check_exceptions = {"]
    for check, reason in exceptions.items():
        parts = textwrap.wrap(reason, width=76)
        lines.append(f"    {check!r}: (")
        lines += [
            f"        {part + (' ' if n < len(parts) - 1 else '')!r}"
            for n, part in enumerate(parts)
        ]
        lines.append("    ),")
    return "\n".join([*lines, "}"])


def rewrite(
    script: alembic_ops.MigrationScript, context: MigrationContext
) -> list[alembic_ops.MigrationScript]:
    """The revisions to write for one autogenerated script (rev_id and head set by env.py)."""
    assert script.upgrade_ops is not None
    sorted_ = plan(script.upgrade_ops, context.opts.get("target_metadata"), context.bind)
    message = script.message or "schema change"
    parts = [
        (sorted_.values, f"{message}: add enum values first", {}),
        (sorted_.before, f"{message}: drop indexes first", {}),
        (sorted_.main, message, sorted_.main_exceptions),
        (sorted_.validate, f"{message}: validate", sorted_.validate_exceptions),
        (sorted_.after, f"{message}: build indexes online", {}),
    ]
    if sum(1 for ops_, _, _ in parts if ops_) == 1:
        parts = [(ops_, message, exceptions) for ops_, _, exceptions in parts]
    scripts = []
    for ops_, text, exceptions in parts:
        if not ops_:
            continue
        upgrade = alembic_ops.UpgradeOps(ops=ops_)
        new = alembic_ops.MigrationScript(
            rev_id=None,
            message=text,
            upgrade_ops=upgrade,
            downgrade_ops=upgrade.reverse(),
            head=script.head,
            splice=script.splice,
            branch_label=script.branch_label,
            version_path=script.version_path,
            depends_on=script.depends_on,
            imports=set(),  # Alembic's default is one set shared by every MigrationScript
        )
        assert new.upgrade_ops is not None and new.downgrade_ops is not None
        mark_destructive(new.upgrade_ops, warn=True)
        mark_destructive(new.downgrade_ops, warn=False)
        if exceptions:
            # Rendered after the imports: a reviewed exception, declared where a reviewer
            # sees it; the schema checks honour it for this revision alone.
            new.imports.add(render_exceptions(exceptions))
        scripts.append(new)
    return scripts
