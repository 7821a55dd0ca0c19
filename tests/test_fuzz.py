"""Every public data-access function, fed the inputs that crashed them (issue 18): dates at
both ends of years 1-9999 with every offset, lone surrogates in every string, a full pool
and killed connections. Each call returns, or raises one of the project's own errors.

Table-driven (no randomness): the same few thousand calls every run. The list's cursor is
left to tests/test_listing.py (its opaque cursors)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, create_engine, pool, text
from sqlmodel import Session

from models import (
    Conflict,
    DatabaseError,
    InvalidArgument,
    Priority,
    Recurring,
    TaskCreate,
    TaskReplace,
    TaskUpdate,
    acting_as,
    bind_user,
    create_task,
    delete_task,
    get_task,
    list_tasks,
    replace_task,
    update_task,
)
from models.db import make_engine
from models.security import APP_ROLE
from models.settings import Settings
from tests.support import PgServer

PROJECT_ERRORS = (InvalidArgument, DatabaseError, Conflict)
OWNER = "fuzzer"
# Every whole-hour offset, the half and quarter hours in use, and the extremes.
OFFSETS = sorted(
    {timedelta(hours=h) for h in range(-23, 24)}
    | {timedelta(hours=h, minutes=m) for h in (-9, -3, 3, 4, 5, 6, 9, 10) for m in (30,)}
    | {timedelta(hours=5, minutes=45), timedelta(hours=12, minutes=45)}
    | {timedelta(hours=23, minutes=59), -timedelta(hours=23, minutes=59)}
)
EDGES = (datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999))
DATES: list[Any] = [
    *EDGES,
    *(edge.replace(tzinfo=timezone(offset)) for edge in EDGES for offset in OFFSETS),
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999999-14:00",
]
Call = Callable[[Session], object]
SURROGATES = ["\ud800", "a\udfffb", "\udc80" * 3, "ok \ud83d"]


@pytest.fixture(scope="module")
def app(pg_server: PgServer, head_template: str) -> Iterator[tuple[Engine, Engine]]:
    """(the app engine as the app role, the superuser's engine) on a copy of head."""
    with pg_server.database("fuzz", template=head_template) as name:
        app_role = replace(pg_server, user=APP_ROLE, password=None)
        engine = make_engine(app_role.url(name), Settings(), pool_pre_ping=False)
        admin = create_engine(pg_server.url(name), poolclass=pool.NullPool)
        yield engine, admin
        engine.dispose()
        admin.dispose()


def calls(task_id: int, value: Any, field: str) -> list[Call]:
    """Each public function with value in one argument (field: what kind of value it is).
    A date string is parsed first where a schema object carries it (the API parses it)."""
    if field == "date":
        when = datetime.fromisoformat(value) if isinstance(value, str) else value
        recurring: dict[str, Any] = {
            "recurring": Recurring.DAILY,
            "due_date": when,
            "recurring_end_date": when,
        }
        return [
            lambda s: create_task(s, OWNER, TaskCreate.model_construct(title="t", due_date=when)),
            lambda s: create_task(s, OWNER, TaskCreate.model_construct(title="t", **recurring)),
            lambda s: update_task(s, OWNER, task_id, TaskUpdate.model_construct(due_date=when)),
            lambda s: update_task(
                s, OWNER, task_id, TaskUpdate(title="t"), expected_updated_at=value
            ),
            lambda s: replace_task(
                s,
                OWNER,
                task_id,
                TaskReplace.model_construct(
                    title="t", complete=False, priority=Priority.LOW, **recurring
                ),
            ),
            lambda s: list_tasks(s, OWNER, due_before=value),
            lambda s: list_tasks(s, OWNER, due_after=value, sort_by="due_date"),
        ]
    text_fields: list[Call] = [
        lambda s: create_task(s, OWNER, TaskCreate.model_construct(title=value)),
        lambda s: create_task(s, OWNER, TaskCreate.model_construct(title="t", description=value)),
        lambda s: create_task(s, OWNER, TaskCreate.model_construct(title="t", tags=[value])),
        lambda s: update_task(s, OWNER, task_id, TaskUpdate.model_construct(title=value)),
        lambda s: update_task(s, OWNER, task_id, TaskUpdate.model_construct(tags=["a", value])),
        lambda s: list_tasks(s, OWNER, search=value),
        lambda s: list_tasks(s, OWNER, tags=[value]),
    ]
    owners: list[Call] = [
        lambda s: create_task(s, value, TaskCreate(title="t")),
        lambda s: get_task(s, value, task_id),
        lambda s: update_task(s, value, task_id, TaskUpdate(title="t")),
        lambda s: replace_task(
            s, value, task_id, TaskReplace(title="t", complete=False, priority=Priority.LOW)
        ),
        lambda s: delete_task(s, value, task_id),
        lambda s: list_tasks(s, value),
        lambda s: bind_user(s, value),
        lambda s: acting_as(s, value).__enter__(),
    ]
    return text_fields + owners


def outcome(engine: Engine, call: Call) -> str:
    """'ok', or the name of the project error the call raised; anything else fails the test.
    The session must close quietly afterwards."""
    session = Session(engine)
    try:
        call(session)
        return "ok"
    except PROJECT_ERRORS as exc:
        assert "\n" not in str(exc), str(exc)
        return type(exc).__name__
    finally:
        session.close()


def test_dates_at_both_ends_with_every_offset(app: tuple[Engine, Engine]) -> None:
    """Years 1 and 9999 with every UTC offset: in every date argument, InvalidArgument when
    the UTC time leaves years 1-9999 (never OverflowError); stored and listed when it
    does not. The API schemas give pydantic's ValidationError (a 422) likewise."""
    engine, _ = app
    with Session(engine) as session:
        task = create_task(session, OWNER, TaskCreate(title="target"))
    assert task.id is not None
    stored = 0
    for value in DATES:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
        try:
            parsed.astimezone(UTC) if parsed.tzinfo else parsed
        except OverflowError:  # every call refuses it, before any SQL
            for call in calls(task.id, value, "date"):
                assert outcome(engine, call) == "InvalidArgument", value
            with pytest.raises(ValidationError, match="within years 1-9999"):
                TaskCreate.model_validate({"title": "t", "due_date": value})
            continue
        first, *_, last = calls(task.id, value, "date")
        assert (outcome(engine, first), outcome(engine, last)) == ("ok", "ok"), value
        stored += 1
    assert 0 < stored < len(DATES)


def test_lone_surrogates_in_every_string(app: tuple[Engine, Engine]) -> None:
    """A lone surrogate (JSON's "\\ud800") in a title, description, tag, search or owner id:
    InvalidArgument before any SQL, never UnicodeEncodeError."""
    engine, _ = app
    for value in SURROGATES:
        for call in calls(1, value, "text"):
            assert outcome(engine, call) == "InvalidArgument", value


def valid_calls(task_id: int) -> list[Call]:
    """Each public function once, with good arguments."""
    return [
        lambda s: create_task(s, OWNER, TaskCreate(title="t")),
        lambda s: get_task(s, OWNER, task_id),
        lambda s: update_task(s, OWNER, task_id, TaskUpdate(complete=True)),
        lambda s: replace_task(
            s, OWNER, task_id, TaskReplace(title="t", complete=False, priority=Priority.LOW)
        ),
        lambda s: list_tasks(s, OWNER, search="abc", due_before=datetime(2030, 1, 1, tzinfo=UTC)),
        lambda s: delete_task(s, OWNER, task_id),
    ]


def test_a_full_pool_is_one_line_for_every_function(
    pg_server: PgServer, app: tuple[Engine, Engine]
) -> None:
    """Every pooled connection taken: each function raises the one-line DatabaseError."""
    engine, _ = app
    full = make_engine(engine.url, Settings(), pool_size=1, max_overflow=0, pool_timeout=0.01)
    try:
        with full.connect() as held:
            held.execute(text("SELECT 1"))
            for call in valid_calls(1):
                assert outcome(full, call) == "DatabaseError"
    finally:
        full.dispose()


def test_killed_connections_are_one_line_for_every_function(app: tuple[Engine, Engine]) -> None:
    """The session's server connection terminated (pg_terminate_backend), between
    transactions or inside one: each function raises the one-line DatabaseError, the
    session closes quietly, and the next call works."""
    engine, admin = app
    with Session(engine) as session:
        task = create_task(session, OWNER, TaskCreate(title="survivor"))
    assert task.id is not None
    for inside in (False, True):
        for call in valid_calls(task.id)[:-1]:
            session = Session(engine)
            try:
                pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
                if not inside:
                    session.commit()  # the connection goes back to the pool, then dies
                with admin.begin() as conn:
                    conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                with pytest.raises(DatabaseError) as lost:
                    call(session)
                assert "\n" not in str(lost.value)
            finally:
                session.close()
            assert outcome(engine, valid_calls(task.id)[1]) == "ok"
