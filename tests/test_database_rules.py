"""The database layer: raw SQL that breaks a contract rule fails with a constraint error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from models.task import NOT_BLANK_REGEX, WHITESPACE

MULTIBYTE = ["é", "€", "😀"]
INSERT = text(
    "INSERT INTO tasks (user_id, title, description) VALUES (:user_id, :title, :description) "
    "RETURNING id, complete, created_at, updated_at"
)


def insert(conn: Connection, **values: Any) -> Any:
    row = {"user_id": "alice", "title": "a task", "description": None, **values}
    return conn.execute(INSERT, row).one()


def rejects(conn: Connection, sql: str, **params: Any) -> str:
    """Run sql in a savepoint; it must fail. Returns the server's error text."""
    with pytest.raises(DBAPIError) as exc, conn.begin_nested():
        conn.execute(text(sql), params)
    return str(exc.value.orig)


def rejects_insert(conn: Connection, **values: Any) -> str:
    row = {"user_id": "alice", "title": "a task", "description": None, **values}
    return rejects(
        conn,
        "INSERT INTO tasks (user_id, title, description) VALUES (:user_id, :title, :description)",
        **row,
    )


@pytest.mark.parametrize("field", ["user_id", "title"])
@pytest.mark.parametrize("value", ["", " ", "\t \n", "\u00a0\u3000"])
def test_blank_user_id_and_title_fail(conn: Connection, field: str, value: str) -> None:
    """An empty or whitespace-only user_id or title fails its CHECK constraint."""
    error = rejects_insert(conn, **{field: value})
    assert f"ck_tasks_{field}_not_blank" in error


@pytest.mark.parametrize("field", ["user_id", "title"])
def test_missing_user_id_and_title_fail(conn: Connection, field: str) -> None:
    """A NULL user_id or title fails NOT NULL."""
    assert "not-null constraint" in rejects_insert(conn, **{field: None})


@pytest.mark.parametrize(
    ("field", "limit"), [("user_id", 255), ("title", 200), ("description", 1000)]
)
@pytest.mark.parametrize("char", ["a", *MULTIBYTE])
def test_lengths_count_characters(conn: Connection, field: str, limit: int, char: str) -> None:
    """limit characters fit, limit+1 fail, also when each character takes 2-4 bytes."""
    insert(conn, **{field: char * limit})
    error = rejects_insert(conn, **{field: char * (limit + 1)})
    assert f"character varying({limit})" in error


def test_nul_is_rejected_by_the_server(conn: Connection) -> None:
    """A NUL character built in raw SQL cannot be stored in any text column."""
    error = rejects(
        conn, "INSERT INTO tasks (user_id, title) VALUES ('alice', 'a' || chr(0) || 'b')"
    )
    assert "null character not permitted" in error


def test_blank_means_the_same_in_sql_and_python(conn: Connection) -> None:
    """Exactly the characters Python calls whitespace fail the CHECK's regular expression."""
    blank = conn.execute(
        text(
            "SELECT string_agg(chr(c), '' ORDER BY c) FROM generate_series(1, 1114111) AS c "
            "WHERE c NOT BETWEEN 55296 AND 57343 AND chr(c) !~ :regex"
        ),
        {"regex": NOT_BLANK_REGEX},
    ).scalar_one()
    assert blank == WHITESPACE


def test_complete_defaults_to_false_and_timestamps_are_set(conn: Connection) -> None:
    """An insert without complete/timestamps gets false and the current time in both."""
    before = conn.execute(text("SELECT now()")).scalar_one()
    row = insert(conn)
    assert row.complete is False
    assert row.created_at == row.updated_at == before
    assert row.created_at.utcoffset() is not None


def test_id_is_generated_and_never_set_by_a_client(conn: Connection) -> None:
    """id is an identity: an explicit id on insert, or changing it, fails."""
    row = insert(conn)
    assert isinstance(row.id, int)
    assert "GENERATED ALWAYS" in rejects(
        conn, "INSERT INTO tasks (id, user_id, title) VALUES (424242, 'alice', 't')"
    )
    assert "can only be updated to DEFAULT" in rejects(
        conn, "UPDATE tasks SET id = 424242 WHERE id = :id", id=row.id
    )


def test_raw_update_refreshes_updated_at_and_pins_created_at(conn: Connection) -> None:
    """A raw UPDATE moves updated_at forward; created_at cannot be changed."""
    row = insert(conn)
    updated = conn.execute(
        text(
            "UPDATE tasks SET title = 'renamed', created_at = '2000-01-01', "
            "updated_at = '2000-01-01' WHERE id = :id RETURNING created_at, updated_at"
        ),
        {"id": row.id},
    ).one()
    assert updated.created_at == row.created_at
    assert updated.updated_at > row.updated_at
    assert updated.updated_at <= conn.execute(text("SELECT clock_timestamp()")).scalar_one()


def test_timestamps_are_utc_whatever_the_session_timezone(conn: Connection) -> None:
    """timestamptz stores an instant: read in another TimeZone it is the same UTC moment."""
    row = insert(conn)
    conn.execute(text("SET LOCAL TIME ZONE 'Asia/Kathmandu'"))
    again = conn.execute(
        text("SELECT created_at FROM tasks WHERE id = :id"), {"id": row.id}
    ).scalar_one()
    assert again == row.created_at
    assert again.astimezone(UTC) == row.created_at.astimezone(UTC)
    assert isinstance(again, datetime)
