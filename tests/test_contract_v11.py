"""Contract v1.1 (priority, dates, recurrence, tags): raw SQL and the API schemas both refuse.

The contract tests: with a change to the tasks table's columns, this file changes too."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from models import Priority, Recurring, Task, TaskCreate, TaskReplace, TaskUpdate
from models.task import WHITESPACE

DUE = "2026-03-01T09:00:00+00:00"


def insert(conn: Connection, **values: Any) -> Any:
    """Insert a task by raw SQL with these extra columns; return the stored row."""
    row = {"user_id": "alice", "title": "t", **values}
    names = ", ".join(row)
    marks = ", ".join(f":{k}" for k in row)
    sql = f"INSERT INTO tasks ({names}) VALUES ({marks}) RETURNING *"
    return conn.execute(text(sql), row).one()


def rejects(conn: Connection, **values: Any) -> str:
    """The raw INSERT must fail; the server's error text."""
    with pytest.raises(DBAPIError) as exc, conn.begin_nested():
        insert(conn, **values)
    return str(exc.value.orig)


def test_new_columns_default_for_a_v1_0_insert(conn: Connection) -> None:
    """A v1.0 INSERT (no new column) gets priority medium, recurring none, no dates, no tags."""
    row = insert(conn)
    assert (row.priority, row.recurring, row.due_date, row.recurring_end_date, row.tags) == (
        "medium",
        "none",
        None,
        None,
        [],
    )


def test_priority_and_recurring_accept_only_their_values(conn: Connection) -> None:
    """An unknown priority or recurrence fails in the database (native enums)."""
    assert "invalid input value for enum task_priority" in rejects(conn, priority="urgent")
    assert "invalid input value for enum task_recurring" in rejects(conn, recurring="hourly")


def test_priority_sorts_low_medium_high(conn: Connection) -> None:
    """ORDER BY priority is low < medium < high, not alphabetical."""
    for value in ("high", "low", "medium"):
        insert(conn, user_id="sorter", priority=value)
    got = conn.execute(text("SELECT priority FROM tasks WHERE user_id = 'sorter' ORDER BY 1"))
    assert got.scalars().all() == ["low", "medium", "high"]


def test_recurrence_rules_in_the_database(conn: Connection) -> None:
    """Recurring needs a due date; an end date needs a recurrence and is not before the due date."""
    assert "ck_tasks_recurring_needs_due_date" in rejects(conn, recurring="daily")
    assert "ck_tasks_recurring_end_date_valid" in rejects(
        conn, due_date=DUE, recurring_end_date=DUE
    )
    assert "ck_tasks_recurring_end_date_valid" in rejects(
        conn, recurring="weekly", due_date=DUE, recurring_end_date="2026-02-28T00:00:00Z"
    )
    row = insert(conn, recurring="weekly", due_date=DUE, recurring_end_date=DUE)
    assert row.recurring == "weekly"


@pytest.mark.parametrize(
    "tags",
    [
        [f"t{i}" for i in range(21)],
        ["x" * 51],
        [""],
        ["\u3000\t "],
        ["Work", "work"],
        ["ÉTÉ", "été"],
        ["a", None],
        [["a"], ["b"]],
    ],
    ids=["21 tags", "51 chars", "empty", "blank", "dup", "dup-accented", "null", "2-dim"],
)
def test_bad_tags_fail_in_the_database(conn: Connection, tags: Any) -> None:
    """Every tag rule is a CHECK (tasks_tags_valid): too many, too long, blank, duplicate, NULL."""
    assert "ck_tasks_tags_valid" in rejects(conn, tags=tags)


def test_good_tags_are_stored_in_order(conn: Connection) -> None:
    """20 tags of 50 characters, any case and script, come back in the order given."""
    tags = [f"{i:02d}" + "é" * 48 for i in range(20)][::-1]
    assert insert(conn, tags=tags).tags == tags
    assert insert(conn, tags=["b", "A", "a-b"]).tags == ["b", "A", "a-b"]


def test_blank_tags_mean_the_same_in_sql_and_python(conn: Connection) -> None:
    """Each of Python's whitespace characters alone is a blank tag for the CHECK."""
    for char in WHITESPACE:
        ok = conn.execute(text("SELECT tasks_tags_valid(ARRAY[:c])"), {"c": char * 2}).scalar()
        assert ok is False, repr(char)
        assert TaskCreate.model_validate({"title": "t", "tags": [f"{char}x"]}).tags == [f"{char}x"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"priority": "urgent"}, "priority"),
        ({"recurring": "hourly"}, "recurring"),
        ({"recurring": "daily"}, None),
        ({"recurring_end_date": DUE, "due_date": DUE}, None),
        ({"tags": ["a"] * 2}, "tags"),
        ({"tags": ["A", "a"]}, "tags"),
        ({"tags": [" "]}, "tags"),
        ({"tags": ["x" * 51]}, "tags"),
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"tags": ["a\x00"]}, "tags"),
        ({"due_date": "tomorrow"}, "due_date"),
    ],
)
def test_api_schemas_refuse_what_the_database_refuses(data: dict[str, Any], field: str) -> None:
    """TaskCreate rejects every v1.1 rule break with a ValidationError (naming the field)."""
    with pytest.raises(ValidationError) as exc:
        TaskCreate.model_validate({"title": "t", **data})
    if field is not None:
        assert {str(e["loc"][0]) for e in exc.value.errors()} == {field}


def test_create_defaults_and_naive_dates_are_utc() -> None:
    """TaskCreate defaults to medium/none/no tags; a date without a zone is read as UTC."""
    task = TaskCreate.model_validate({"title": "t", "due_date": "2026-03-01T09:00:00"})
    assert (task.priority, task.recurring, task.tags) == (Priority.MEDIUM, Recurring.NONE, [])
    assert task.due_date is not None and task.due_date.isoformat() == DUE
    assert task.model_dump(mode="json")["priority"] == "medium"


def test_replace_requires_title_complete_priority() -> None:
    """TaskReplace (PUT) needs title, complete and priority; everything else has its default."""
    for missing in ("title", "complete", "priority"):
        data = {"title": "t", "complete": True, "priority": "high"}
        del data[missing]
        with pytest.raises(ValidationError) as exc:
            TaskReplace.model_validate(data)
        assert {str(e["loc"][0]) for e in exc.value.errors()} == {missing}
    full = TaskReplace.model_validate({"title": "t", "complete": True, "priority": "low"})
    assert full.model_dump() == {
        **{"title": "t", "description": None, "complete": True, "priority": Priority.LOW},
        **{"due_date": None, "recurring": Recurring.NONE, "recurring_end_date": None, "tags": []},
    }


def test_update_new_fields_optional_but_not_null() -> None:
    """TaskUpdate takes each new field alone; priority, recurring and tags cannot be null."""
    assert TaskUpdate(priority=Priority.HIGH).model_dump(exclude_unset=True) == {"priority": "high"}
    assert TaskUpdate.model_validate({"due_date": None}).model_dump(exclude_unset=True) == {
        "due_date": None
    }
    for field in ("priority", "recurring", "tags"):
        with pytest.raises(ValidationError):
            TaskUpdate.model_validate({field: None})
    with pytest.raises(ValidationError):
        TaskUpdate.model_validate({"recurring": "daily", "due_date": None})


def test_table_model_is_the_tasks_table() -> None:
    """The table model maps to `tasks` with the twelve v1.1 contract columns."""
    assert Task.__tablename__ == "tasks"
    assert {c.name for c in Task.__table__.columns} == {  # type: ignore[attr-defined]
        *("id", "user_id", "title", "description", "complete", "priority", "due_date"),
        *("recurring", "recurring_end_date", "tags", "created_at", "updated_at"),
    }
