"""Data access: CRUD scoped to one user, one statement per write, validated before any SQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlmodel import Session

from models import (
    Conflict,
    InvalidArgument,
    Priority,
    TaskCreate,
    TaskPage,
    TaskRead,
    TaskReplace,
    TaskUpdate,
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


def test_create_returns_generated_fields(session: Session) -> None:
    """create_task stores the task and returns id, complete=false and UTC timestamps."""
    task = create_task(session, "alice", TaskCreate(title="Buy milk", description="2 l"))
    assert task.id is not None and task.user_id == "alice" and task.complete is False
    assert task.created_at is not None and task.created_at.tzinfo is UTC
    assert task.updated_at == task.created_at
    read = TaskRead.model_validate(task)
    assert read.model_dump_json().count("Z") >= 2


def test_timestamps_come_back_utc_in_any_session_timezone(session: Session) -> None:
    """Loaded timestamps are aware UTC datetimes even when the session TimeZone is not UTC."""
    task = create_task(session, "alice", TaskCreate(title="t"))
    session.exec(text("SET LOCAL TIME ZONE 'America/New_York'"))  # type: ignore[call-overload]
    session.expire_all()
    loaded = get_task(session, "alice", task.id or 0)
    assert loaded is not None and loaded.created_at is not None
    assert loaded.created_at.tzinfo is UTC


def test_update_is_partial_and_refreshes_updated_at(session: Session) -> None:
    """update_task changes only the fields sent; updated_at moves, created_at stays."""
    task = create_task(session, "alice", TaskCreate(title="t", description="keep me"))
    created, updated = task.created_at, task.updated_at
    changed = update_task(session, "alice", task.id or 0, TaskUpdate(complete=True))
    assert changed is not None
    assert (changed.title, changed.description, changed.complete) == ("t", "keep me", True)
    assert changed.created_at == created
    assert changed.updated_at is not None and updated is not None
    assert changed.updated_at > updated
    cleared = update_task(session, "alice", task.id or 0, TaskUpdate(description=None))
    assert cleared is not None and cleared.description is None


def ids_of(page: TaskPage) -> list[int]:
    return [t.id for t in page.tasks]


def test_list_filters_orders_newest_first_and_paginates(session: Session) -> None:
    """list_tasks returns the user's tasks newest first, filtered, counted and paged."""
    ids = [create_task(session, "alice", TaskCreate(title=f"t{i}")).id or 0 for i in range(5)]
    update_task(session, "alice", ids[1], TaskUpdate(complete=True))
    everything = list_tasks(session, "alice", with_count=True)
    assert ids_of(everything) == ids[::-1] and everything.count == 5
    assert not everything.has_next and everything.next_cursor is None
    assert ids_of(list_tasks(session, "alice", status="completed")) == [ids[1]]
    assert ids_of(list_tasks(session, "alice", complete=True)) == [ids[1]]  # v1.0's filter
    assert ids_of(list_tasks(session, "alice", status="pending")) == [
        ids[4],
        ids[3],
        ids[2],
        ids[0],
    ]
    first = list_tasks(session, "alice", limit=2, with_count=True)
    assert ids_of(first) == [ids[4], ids[3]] and first.has_next and first.count == 5
    second = list_tasks(session, "alice", limit=2, cursor=first.next_cursor)
    assert ids_of(second) == [ids[2], ids[1]]
    with pytest.raises(InvalidArgument, match="limit"):
        list_tasks(session, "alice", limit=0)


def test_users_are_isolated(session: Session) -> None:
    """User B can neither see, list, change nor delete user A's task."""
    task = create_task(session, "alice", TaskCreate(title="private"))
    tid = task.id or 0
    assert get_task(session, "bob", tid) is None
    assert list_tasks(session, "bob").tasks == []
    assert update_task(session, "bob", tid, TaskUpdate(title="hacked")) is None
    assert delete_task(session, "bob", tid) is False
    session.expire_all()
    kept = get_task(session, "alice", tid)
    assert kept is not None and kept.title == "private"
    assert delete_task(session, "alice", tid) is True
    assert get_task(session, "alice", tid) is None


def test_invalid_data_fails_before_any_sql(session: Session) -> None:
    """Invalid input raises InvalidArgument naming the field and sends no SQL."""
    statements: list[str] = []
    bind = session.get_bind()

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(bind, "before_cursor_execute", record)
    try:
        with pytest.raises(InvalidArgument, match="user_id"):
            create_task(session, "   ", TaskCreate(title="t"))
        with pytest.raises(InvalidArgument, match="title"):
            create_task(session, "alice", TaskCreate.model_construct(title="\x00"))
        with pytest.raises(InvalidArgument, match="user_id"):
            list_tasks(session, "")
    finally:
        event.remove(bind, "before_cursor_execute", record)
    assert statements == []


@contextmanager
def statements_sent(session: Session) -> Iterator[list[str]]:
    """The first keyword of each statement sent in the block (INSERT, UPDATE, WITH, ...),
    leaving out the test's own rollback isolation (SAVEPOINT, RELEASE)."""
    sent: list[str] = []
    bind = session.get_bind()

    def record(*args: object) -> None:
        statement = str(args[2]).strip().split()[0].upper()
        if statement not in ("SAVEPOINT", "RELEASE"):
            sent.append(statement)

    event.listen(bind, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(bind, "before_cursor_execute", record)


def test_each_write_is_one_statement(session: Session) -> None:
    """create, update, replace and delete each send one INSERT/UPDATE/DELETE ... RETURNING."""
    with statements_sent(session) as sent:
        task = create_task(session, "alice", TaskCreate(title="t"))
        update_task(session, "alice", task.id or 0, TaskUpdate(complete=True))
        replace_task(
            session,
            "alice",
            task.id or 0,
            TaskReplace(title="u", complete=False, priority=Priority.LOW),
        )
        delete_task(session, "alice", task.id or 0)
        assert update_task(session, "alice", task.id or 0, TaskUpdate(title="gone")) is None
        assert delete_task(session, "alice", task.id or 0) is False
    assert sent == ["INSERT", "UPDATE", "UPDATE", "DELETE", "UPDATE", "DELETE"]


def test_ids_that_cannot_exist_are_not_found(session: Session) -> None:
    """An id beyond bigint, zero or negative is "not found" for every call, not a driver error."""
    for bad in (0, -1, 2**63, 2**80):
        assert get_task(session, "alice", bad) is None
        assert update_task(session, "alice", bad, TaskUpdate(title="x")) is None
        assert delete_task(session, "alice", bad) is False


def seen(updated_at: object) -> dict[str, Any]:
    """The precondition argument: the updated_at a client read."""
    return {"expected_updated_at": updated_at}


def test_an_update_with_a_precondition_applies_only_to_what_the_client_read(
    session: Session,
) -> None:
    """expected_updated_at (the updated_at the client read, also as the JSON string it got):
    applied if unchanged, in one statement; Conflict (412) if the task changed since; None
    if it is gone or another user's; a blind update still works."""
    task = create_task(session, "alice", TaskCreate(title="t", tags=["a"]))
    tid, read = task.id or 0, task.updated_at
    with statements_sent(session) as sent:
        done = update_task(
            session, "alice", tid, TaskUpdate(tags=["a", "b"]), expected_updated_at=read
        )
    assert sent == ["WITH"]  # one statement: the guarded UPDATE ... RETURNING, in a CTE
    assert done is not None and done.tags == ["a", "b"] and done.updated_at != read
    for stale in (read, TaskRead.model_validate(task).model_dump(mode="json")["updated_at"]):
        with pytest.raises(Conflict, match=f"task {tid} changed since"):
            update_task(
                session, "alice", tid, TaskUpdate(tags=["a", "c"]), expected_updated_at=stale
            )
        with pytest.raises(Conflict):
            update_task(session, "alice", tid, TaskUpdate(), **seen(stale))
    fresh = TaskRead.model_validate(done).model_dump(mode="json")["updated_at"]
    assert "." in fresh  # microseconds survive the JSON round trip
    full = TaskReplace(title="r", complete=True, priority=Priority.HIGH)
    replaced = replace_task(session, "alice", tid, full, **seen(fresh))
    assert replaced is not None and replaced.title == "r"
    assert (
        update_task(session, "bob", tid, TaskUpdate(title="x"), expected_updated_at=fresh) is None
    )
    assert update_task(session, "alice", tid, TaskUpdate(complete=False)) is not None  # blind
    delete_task(session, "alice", tid)
    assert update_task(session, "alice", tid, TaskUpdate(title="x"), **seen(fresh)) is None
    with pytest.raises(InvalidArgument, match="expected_updated_at"):
        update_task(session, "alice", tid, TaskUpdate(title="x"), **seen("soon"))


def test_two_clients_appending_a_tag_at_once_keep_both_with_the_precondition(
    pg_server: PgServer, head_template: str
) -> None:
    """Two clients read a task, then both append a tag at once: blind updates lose one tag
    in every round (5 of 5); with the precondition the loser gets Conflict, reads again,
    retries, and all 20 rounds keep both tags."""
    with pg_server.database("race", template=head_template) as name:
        app_role = replace(pg_server, user=APP_ROLE, password=None)
        engine = make_engine(app_role.url(name), Settings(), pool_pre_ping=False)

        def append(task_id: int, tag: str, barrier: threading.Barrier, guarded: bool) -> None:
            with Session(engine) as session:
                task = get_task(session, "ann", task_id)
                barrier.wait()  # both have read before either writes
                while task is not None:
                    change = TaskUpdate(tags=[*task.tags, tag])
                    try:
                        seen = task.updated_at if guarded else None
                        update_task(session, "ann", task_id, change, expected_updated_at=seen)
                        return
                    except Conflict:
                        task = get_task(session, "ann", task_id)

        kept = {}
        try:
            for guarded, rounds in ((False, 5), (True, 20)):
                kept[guarded] = 0
                for _ in range(rounds):
                    with Session(engine) as session:
                        task_id = create_task(session, "ann", TaskCreate(title="t")).id or 0
                    barrier = threading.Barrier(2)
                    with ThreadPoolExecutor(2) as pool:
                        list(
                            pool.map(
                                append, [task_id] * 2, ["x", "y"], [barrier] * 2, [guarded] * 2
                            )
                        )
                    with Session(engine) as session:
                        final = get_task(session, "ann", task_id)
                    assert final is not None
                    kept[guarded] += sorted(final.tags) == ["x", "y"]
        finally:
            engine.dispose()
    assert kept == {False: 0, True: 20}


def test_an_update_that_sets_no_field_is_refused(session: Session) -> None:
    """update_task with nothing to set: NothingToUpdate, an InvalidArgument with status 400
    and CLIENT.md's message, before any SQL."""
    task = create_task(session, "alice", TaskCreate(title="t"))
    with pytest.raises(InvalidArgument, match="No fields to update") as refused:
        update_task(session, "alice", task.id or 0, TaskUpdate())
    assert refused.value.status_code == 400
