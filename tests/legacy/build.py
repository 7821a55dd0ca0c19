"""Build each legacy shape the way the app built it: `create_all()` of its models of the
time, its hand-run scripts (sql/), its start-up `create_all()` again, and realistic rows.

    build(url, "L3/varchar")

Shapes (the names migrations/adoption/shapes.py gives them):
- "L1": the Stage 1 plan's 7-field tasks;
- "L2/<priority>": L1 plus priority, in one of its forms: "varchar" (001 on L1, rows in
  mixed case as the app wrote them), "enum" (create_all() of the Phase II model),
  "enum-upper" (the same with the upper-case labels 003 found), "enum-003" (003 run on
  "enum-upper");
- "L3/<priority>": L2/<priority> plus 008's columns and indexes, then the Phase III model's
  create_all() (it adds the type recurringtype, unused).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import URL, Connection, MetaData, create_engine, pool, text

from tests.legacy.models import Phase2Base, Phase3Base, Stage1Base, UpperPhase2Base

SQL = Path(__file__).parent / "sql"
PRIORITY_FORMS = ("varchar", "enum", "enum-upper", "enum-003")
SHAPES = ("L1", *(f"L{n}/{form}" for n in (2, 3) for form in PRIORITY_FORMS))

# Naive timestamps around Europe/Berlin's daylight saving changes of 2025: 02:30 on
# 30 March does not exist there, 02:30 on 26 October exists twice.
SPRING, GAP, AUTUMN = "2025-03-30 00:30:00", "2025-03-30 02:30:00", "2025-10-26 02:30:00"

# Stage 1 rows: (user_id, title, description, complete, created_at, updated_at).
STAGE1 = [
    ("alice", "Buy milk", None, False, SPRING, SPRING),
    (
        "alice",
        "Ünïcödé 😀 タスク",
        "کام کی تفصیل: Urdu, as the app's chat writes it",
        True,
        GAP,
        AUTUMN,
    ),
    ("bob", "界" * 200, "😀" * 1000, False, AUTUMN, AUTUMN),
    ("u" * 255, "the longest owner id the contract allows", "", False, SPRING, GAP),
    ("carol", "deleted later: a gap in the ids", None, False, SPRING, SPRING),
    ("\u3000frank ", "an owner id with blanks around it", None, False, SPRING, SPRING),
    ("carol", "the newest task", "  leading and trailing blanks stay  ", True, AUTUMN, AUTUMN),
    ("carol", "deleted later: the sequence runs ahead of max(id)", None, False, GAP, GAP),
]
# Phase II rows: priority as each form holds it.
PRIORITIES = {
    "varchar": ["medium", "HIGH", "low"],  # 'HIGH': the app's upper-case member names
    "enum": ["medium", "high", "low"],
    "enum-upper": ["MEDIUM", "HIGH", "LOW"],
}
# Phase III rows: (due_date, recurring, recurring_end_date, tags).
STAGE3 = [
    (GAP, "weekly", AUTUMN, ["work", "ホーム", "😀" * 50]),
    (None, "none", None, [f"tag {n:02d}" for n in range(20)]),
    (SPRING, "none", None, []),
]


def build(url: URL, shape: str) -> None:
    """Turn the empty database at url into `shape` (see the module doc), with rows."""
    generation, _, form = shape.partition("/")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            if form in ("enum", "enum-upper", "enum-003"):
                base = UpperPhase2Base if form != "enum" else Phase2Base
                create_all(conn, base.metadata)
                insert_stage1(conn, priority=True)
                insert_stage2(conn, PRIORITIES["enum" if form == "enum" else "enum-upper"])
                if form == "enum-003":
                    run_script(conn, "003_fix_priority_enum_case.sql", one_transaction=False)
            else:
                create_all(conn, Stage1Base.metadata)
                insert_stage1(conn)
                if generation != "L1":
                    run_script(conn, "001_add_priority_column.sql")
                    create_all(conn, Phase2Base.metadata)  # the app's next start-up
                    insert_stage2(conn, PRIORITIES["varchar"])
            if generation == "L3":
                run_script(conn, "008_add_advanced_features.sql")
                create_all(conn, Phase3Base.metadata)
                insert_stage3(conn)
            conn.execute(text("DELETE FROM tasks WHERE title LIKE 'deleted later%'"))
            conn.commit()
    finally:
        engine.dispose()


def create_all(conn: Connection, metadata: MetaData) -> None:
    """The app's init_db(): MetaData.create_all (checkfirst, as the app calls it)."""
    metadata.create_all(conn)
    conn.commit()


def run_script(conn: Connection, name: str, *, one_transaction: bool = True) -> None:
    """A hand-run script from sql/: in one transaction, or (003) committing each statement."""
    lines = (SQL / name).read_text().splitlines()
    script = "\n".join(line for line in lines if not line.startswith("--"))
    for statement in filter(None, (s.strip() for s in script.split(";"))):
        conn.exec_driver_sql(statement)
        if not one_transaction:
            conn.commit()
    conn.commit()


def insert_stage1(conn: Connection, priority: bool = False) -> None:
    """The Stage 1 rows (with priority, when the table was created with it: its default
    comes from the model, so the app always sent one)."""
    for user_id, title, description, complete, created, updated in STAGE1:
        columns = "user_id, title, description, complete, created_at, updated_at"
        values = ":u, :t, :d, :c, :ca, :ua"
        params: dict[str, object] = {"u": user_id, "t": title, "d": description, "c": complete}
        params |= {"ca": datetime.fromisoformat(created), "ua": datetime.fromisoformat(updated)}
        if priority:
            label = conn.execute(text("SELECT (enum_range(NULL::taskpriority))[2]")).scalar()
            columns, values, params = f"{columns}, priority", f"{values}, :p", params | {"p": label}
        conn.execute(text(f"INSERT INTO tasks ({columns}) VALUES ({values})"), params)


def insert_stage2(conn: Connection, priorities: list[str]) -> None:
    for n, priority in enumerate(priorities):
        conn.execute(
            text(
                "INSERT INTO tasks (user_id, title, description, complete, priority, created_at, "
                "updated_at) VALUES ('dave', :t, NULL, false, :p, :at, :at)"
            ),
            {"t": f"priority {n}", "p": priority, "at": datetime.fromisoformat(AUTUMN)},
        )


def low(conn: Connection) -> str:
    """How this table's priority says 'low' (a varchar's value, or the enum's first label)."""
    typ = conn.execute(
        text(
            "SELECT udt_name FROM information_schema.columns "
            "WHERE table_name = 'tasks' AND column_name = 'priority'"
        )
    ).scalar_one()
    if typ == "varchar":
        return "low"
    return str(conn.execute(text("SELECT (enum_range(NULL::taskpriority))[1]")).scalar_one())


def insert_stage3(conn: Connection) -> None:
    priority = low(conn)
    for n, (due, recurring, end, tags) in enumerate(STAGE3):
        conn.execute(
            text(
                "INSERT INTO tasks (user_id, title, complete, priority, due_date, recurring, "
                "recurring_end_date, tags, created_at, updated_at) VALUES ('erin', :t, false, "
                ":p, :due, :rec, :end, :tags, :at, :at)"
            ),
            {
                "t": f"phase three {n}",
                "p": priority,
                "due": due and datetime.fromisoformat(due),
                "rec": recurring,
                "end": end and datetime.fromisoformat(end),
                "tags": tags,
                "at": datetime.fromisoformat(GAP),
            },
        )
