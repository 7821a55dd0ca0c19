"""The legacy shapes adoption knows: the `tasks` tables that the app's `create_all()` and its
hand-run scripts built before this project (ashfaq1192/hackathon-todo-fullstack). Each is
declared here once: what the table looks like (exactly, as PostgreSQL's catalog prints it),
which revision's schema it is converted to, and how each column's values become that
revision's. tests/legacy/ builds each one as the app did and proves it is recognised.

To add a shape of your own, append a `Shape` to SHAPES (see docs/adopting.md): its columns
(type, NULL or not, default, each as `\\d tasks` prints them), indexes and constraints by
name, the enum types it uses, the revision whose columns it holds (`target`), and for a
column whose values need converting, `value`: SQL over the legacy row giving the target
column's value (as text for a native enum column of the target). `{zone}` in it stands for
the time zone the naive timestamps are read in (UTC unless `-x adopt-timezone=...`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from migrations.adoption.catalog import Schema, Table, column_text

TS = "timestamp without time zone"
AS_UTC = "{name} AT TIME ZONE {zone}"  # a naive timestamp read in the chosen zone
SERIAL_SEQUENCE = "owned integer START 1 INCREMENT 1 MIN 1 MAX 2147483647 CACHE 1"
PRIORITY_LOWER = ("low", "medium", "high")
PRIORITY_UPPER = ("LOW", "MEDIUM", "HIGH")
RECURRING = ("none", "daily", "weekly", "monthly", "yearly")
# Enum types the app's start-up create_all() leaves behind, unused, beside a varchar column:
# allowed with any of these labels, and dropped by adoption while nothing uses them.
LEFTOVER_TYPES = {
    "taskpriority": (PRIORITY_LOWER, PRIORITY_UPPER),
    "recurringtype": (RECURRING,),
}
# Lossless fixes a user may ask for (-x adopt-fix=...): never applied unasked.
FIXES = {
    "priority-case": "fold the letter case of priority values ('HIGH' -> 'high')",
    "trim-user-id": "remove whitespace before and after user_id",
}


@dataclass(frozen=True)
class Legacy:
    """A legacy column: how the catalog prints it, and how its values convert."""

    type: str
    not_null: bool = True
    default: str | None = None
    value: str = "{name}"  # SQL giving the target column's value ({name}, {zone})
    fixes: dict[str, str] = field(default_factory=dict)  # fix -> `value` with the fix applied

    def text(self) -> str:
        return column_text(self.type, self.not_null, self.default, "")


@dataclass(frozen=True)
class Shape:
    """A legacy `tasks` table, and the revision whose schema it is converted to."""

    name: str
    origin: str  # where it comes from, in words
    target: str  # the revision whose columns it holds
    columns: dict[str, Legacy]  # legacy column name (= the target's) -> declaration
    indexes: dict[str, str]
    constraints: dict[str, str] = field(default_factory=lambda: {"tasks_pkey": "PRIMARY KEY (id)"})
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)  # types its columns use
    table: str = "tasks"
    sequences: dict[str, str] = field(default_factory=lambda: {"tasks_id_seq": SERIAL_SEQUENCE})

    def schema(self) -> Schema:
        """The catalog's description of this shape (column order aside: it is not compared)."""
        table = Table(
            columns={name: col.text() for name, col in self.columns.items()},
            constraints=dict(self.constraints),
            indexes=dict(self.indexes),
            sequences=dict(self.sequences),
        )
        return Schema({self.table: table}, {k: list(v) for k, v in self.enums.items()}, {})

    def values(self, zone: str, fixes: set[str]) -> dict[str, str]:
        """Target column -> SQL over the legacy row giving its value, with the fixes asked."""
        from models.task import WHITESPACE  # the contract's whitespace (str.isspace())

        ws = "[" + "".join(f"\\u{ord(c):04x}" for c in WHITESPACE) + "]"
        found = {}
        for name, col in self.columns.items():
            chosen = [col.fixes[f] for f in sorted(fixes) if f in col.fixes]
            value = chosen[-1] if chosen else col.value
            found[name] = value.format(name=name, zone=zone, ws=ws)
        return found


STAGE1 = {
    "id": Legacy("integer", default="nextval('tasks_id_seq'::regclass)"),
    "user_id": Legacy(
        "character varying",
        fixes={"trim-user-id": "regexp_replace({name}, '^{ws}+|{ws}+$', '', 'g')"},
    ),
    "title": Legacy("character varying(200)"),
    "description": Legacy("character varying(1000)", not_null=False),
    "complete": Legacy("boolean"),
    "created_at": Legacy(TS, value=AS_UTC),
    "updated_at": Legacy(TS, value=AS_UTC),
}
STAGE1_INDEXES = {
    "tasks_pkey": "UNIQUE USING btree (id)",
    "ix_tasks_user_id": "USING btree (user_id)",
}

# priority's forms: (words, the column, the enum types it uses).
PRIORITY: dict[str, tuple[str, Legacy, dict[str, tuple[str, ...]]]] = {
    "varchar": (
        "priority varchar(10) added by 001_add_priority_column.py",
        Legacy(
            "character varying(10)",
            default="'medium'::character varying",
            fixes={"priority-case": "lower({name})"},
        ),
        {},
    ),
    "enum": (
        "priority a native enum taskpriority, from create_all() of the Phase II model",
        Legacy("taskpriority", value="{name}::text"),
        {"taskpriority": PRIORITY_LOWER},
    ),
    "enum-upper": (
        "priority a native enum taskpriority with labels LOW, MEDIUM, HIGH (as "
        "003_fix_priority_enum_case.py found it)",
        Legacy("taskpriority", value="lower({name}::text)"),
        {"taskpriority": PRIORITY_UPPER},
    ),
    "enum-003": (
        "priority a native enum taskpriority, default 'medium', after "
        "003_fix_priority_enum_case.py",
        Legacy("taskpriority", default="'medium'::taskpriority", value="{name}::text"),
        {"taskpriority": PRIORITY_LOWER},
    ),
}
PHASE3 = {
    "due_date": Legacy(TS, not_null=False, value=AS_UTC),
    "recurring": Legacy("character varying(10)", default="'none'::character varying"),
    "recurring_end_date": Legacy(TS, not_null=False, value=AS_UTC),
    "tags": Legacy("text[]", default="'{}'::text[]"),
}
PHASE3_INDEXES = {
    "idx_tasks_due_date": "USING btree (due_date)",
    "idx_tasks_recurring": "USING btree (recurring)",
    "idx_tasks_tags": "USING gin (tags)",
    "idx_tasks_priority": "USING btree (priority)",
    "idx_tasks_complete": "USING btree (complete)",
}

L1 = Shape(
    "L1",
    "the Stage 1 plan's 7-field tasks, from create_all()",
    target="0001",
    columns=STAGE1,
    indexes=STAGE1_INDEXES,
)


def phase2(form: str) -> Shape:
    words, column, enums = PRIORITY[form]
    return replace(
        L1,
        name=f"L2/{form}",
        origin=f"L1 plus {words}",
        target="0003",
        columns={**STAGE1, "priority": column},
        enums=enums,
    )


def phase3(form: str) -> Shape:
    l2 = phase2(form)
    return replace(
        l2,
        name=f"L3/{form}",
        origin=f"{l2.origin}, plus the Phase III columns of 008_add_advanced_features.py",
        target="0007",
        columns={**l2.columns, **PHASE3},
        indexes={**STAGE1_INDEXES, **PHASE3_INDEXES},
    )


SHAPES: tuple[Shape, ...] = (L1, *map(phase2, PRIORITY), *map(phase3, PRIORITY))
