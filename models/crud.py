"""Data access, always scoped to one owner: another user's task is "not found" (None/False).

Each create, update and delete is one statement (INSERT/UPDATE/DELETE ... RETURNING) plus
its commit, so a request racing another one on the same task gets the task or "not found",
never an exception. Bad arguments raise InvalidArgument (HTTP 422), before any SQL is sent.
An update may carry a precondition, the updated_at its client read (a read-modify-write,
such as appending a tag): when the task changed since, it raises Conflict (HTTP 412).

Every function runs for its owner (`models.security.acting_as`): its transactions start
with `set_config('app.user_id', owner, true)`, so the row-level security policies let it
see and change that owner's rows only, also on the app role and through a pooler. The
explicit user_id filters stay in every query too (for the planner, and as defence in depth).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from models.errors import Conflict, DatabaseError, InvalidArgument, NothingToUpdate
from models.security import acting_as
from models.task import DueDate, Task, TaskCreate, TaskReplace, TaskUpdate, UserId

TASKS: sa.Table = Task.__table__  # type: ignore[attr-defined]
BIGINT_MAX = 2**63 - 1
_USER_ID = TypeAdapter(UserId)
_TIMESTAMP = TypeAdapter(DueDate)  # aware, or naive read as UTC; within years 1-9999
# The database's rules that a write may still break (a partial update meets the stored
# row): which field each is about, and what to tell the client.
RULES = {
    "ck_tasks_recurring_needs_due_date": (
        "recurring",
        "recurring other than 'none' needs a due_date",
    ),
    "ck_tasks_recurring_end_date_valid": (
        "recurring_end_date",
        "recurring_end_date needs recurring other than 'none' and must not be before due_date",
    ),
    "ck_tasks_tags_valid": (
        "tags",
        "tags must be 0-20 distinct (ignoring case), non-blank, 1-50 characters",
    ),
    "ck_tasks_title_not_blank": ("title", "must not be empty or whitespace only"),
}
# SQLSTATE class 23 (integrity constraint violation), for the one line of an unknown one.
INTEGRITY = {
    "23502": "not_null_violation",
    "23503": "foreign_key_violation",
    "23505": "unique_violation",
    "23514": "check_violation",
    "23P01": "exclusion_violation",
}
M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


def invalid(exc: ValidationError, prefix: tuple[str, ...] = ()) -> InvalidArgument:
    """A pydantic ValidationError as the project's InvalidArgument (same loc/msg/type)."""
    return InvalidArgument(
        [
            {"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
    )


def owner(user_id: object) -> str:
    """Validate the owner id like the table's rules do, before any SQL is sent."""
    try:
        return _USER_ID.validate_python(user_id)
    except ValidationError as exc:
        raise invalid(exc, ("user_id",)) from None


def for_owner(fn: F) -> F:
    """Run a data-access function `fn(session, user_id, ...)` for its owner: the id
    validated, the session's transactions bound to that user (row-level security) for the call."""

    @functools.wraps(fn)
    def run(session: Session, user_id: str, *args: Any, **kwargs: Any) -> Any:
        with acting_as(session, owner(user_id)):
            return fn(session, user_id, *args, **kwargs)

    return cast(F, run)


def _validated(model: type[M], data: BaseModel) -> M:
    """data checked again as `model` (it may have been built with model_construct)."""
    try:
        return model.model_validate(data.model_dump(exclude_unset=model is TaskUpdate))
    except ValidationError as exc:
        raise invalid(exc) from None


def _task(row: Any) -> Task:
    return Task.model_validate(dict(row))


def _write(session: Session, stmt: Any, params: dict[str, Any] | None = None) -> Any:
    """Run one writing statement and commit; a broken rule becomes InvalidArgument, any
    other integrity error one line naming the constraint, never the SQL or a value (the
    driver's text quotes the failing row, another user's included)."""
    try:
        row = session.execute(stmt, params).mappings().first()
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        diag = getattr(exc.orig, "diag", None)
        name = getattr(diag, "constraint_name", None)
        if name in RULES:
            field, message = RULES[name]
            raise InvalidArgument.of(field, message) from None
        code = getattr(exc.orig, "pgcode", None) or ""
        raise DatabaseError(
            f"the database refused the write ({INTEGRITY.get(code, f'SQLSTATE {code}')}"
            f"{f' on {name}' if name else ''}); no value of it is shown"
        ) from None
    return row


def _where(user_id: str, task_id: object) -> list[Any] | None:
    """The row filter for this owner's task; None if task_id cannot be a task's id."""
    if isinstance(task_id, bool) or not isinstance(task_id, int) or not 0 < task_id <= BIGINT_MAX:
        return None
    return [TASKS.c.id == task_id, TASKS.c.user_id == owner(user_id)]


@for_owner
def create_task(session: Session, user_id: str, data: TaskCreate) -> Task:
    """Insert a task owned by user_id and return it with its generated fields."""
    values = _validated(TaskCreate, data).model_dump()
    stmt = sa.insert(TASKS).values(user_id=owner(user_id), **values).returning(*TASKS.c)
    return _task(_write(session, stmt))


@for_owner
def get_task(session: Session, user_id: str, task_id: int) -> Task | None:
    """The task with this id if user_id owns it, else None."""
    where = _where(user_id, task_id)
    if where is None:
        owner(user_id)
        return None
    row = session.execute(sa.select(*TASKS.c).where(*where)).mappings().first()
    return None if row is None else _task(row)


def _seen(value: object) -> datetime:
    """The precondition's updated_at, validated like every argument."""
    try:
        return _TIMESTAMP.validate_python(value)
    except ValidationError as exc:
        raise invalid(exc, ("expected_updated_at",)) from None


@functools.lru_cache(maxsize=256)
def _guarded_update(keys: tuple[str, ...]) -> Any:
    """The update of these columns with a precondition, one statement: the row is updated
    if it is as the client saw it (updated_at = :seen), and the EXISTS (from the statement's
    snapshot) tells "changed" from "gone". Built once per set of columns (building it costs
    ~0.5 ms of Python); parameters task_id, owner, seen and new_<column>."""
    c = TASKS.c
    mine = [c.id == sa.bindparam("task_id"), c.user_id == sa.bindparam("owner")]
    changed = (
        sa.update(TASKS)
        .where(*mine, c.updated_at == sa.bindparam("seen", type_=c.updated_at.type))
        .values({key: sa.bindparam(f"new_{key}", type_=c[key].type) for key in keys})
        .returning(*c)
        .cte("changed")
    )
    one = sa.select(sa.literal(1).label("one")).subquery("one")
    present = sa.exists().where(*mine).label("present")
    return sa.select(*changed.c, present).select_from(one.outerjoin(changed, sa.true()))


def _change(
    session: Session,
    user_id: str,
    task_id: int,
    values: dict[str, Any],
    expected_updated_at: object = None,
) -> Task | None:
    seen = None if expected_updated_at is None else _seen(expected_updated_at)
    where = _where(user_id, task_id)
    if where is None:
        owner(user_id)
        return None
    if not values:
        task = get_task(session, user_id, task_id)
        if task is not None and seen is not None and task.updated_at != seen:
            raise Conflict(f"task {task_id} changed since {seen.isoformat()}: read it again")
        return task
    if seen is None:
        update = sa.update(TASKS).where(*where).values(**values).returning(*TASKS.c)
        row = _write(session, update)
        return None if row is None else _task(row)
    params = {f"new_{key}": value for key, value in values.items()}
    params.update(task_id=task_id, owner=owner(user_id), seen=seen)
    row = _write(session, _guarded_update(tuple(sorted(values))), params)
    if row["id"] is None:
        if row["present"]:
            raise Conflict(f"task {task_id} changed since {seen.isoformat()}: read it again")
        return None
    return _task({column.key: row[column.key] for column in TASKS.c})


@for_owner
def update_task(
    session: Session,
    user_id: str,
    task_id: int,
    data: TaskUpdate,
    *,
    expected_updated_at: datetime | str | None = None,
) -> Task | None:
    """Apply the fields set in data to user_id's task; None if there is no such task.

    With expected_updated_at (the updated_at the client read), only if the task has not
    changed since: Conflict (HTTP 412) when it has. Without, a blind update, as before.
    NothingToUpdate (an InvalidArgument, HTTP 400) when data sets no field and there is no
    precondition to check.
    """
    values = _validated(TaskUpdate, data).model_dump(exclude_unset=True)
    if not values and expected_updated_at is None:
        raise NothingToUpdate()
    return _change(session, user_id, task_id, values, expected_updated_at)


@for_owner
def replace_task(
    session: Session,
    user_id: str,
    task_id: int,
    data: TaskReplace,
    *,
    expected_updated_at: datetime | str | None = None,
) -> Task | None:
    """Replace every client field of user_id's task (PUT); None if there is no such task.
    expected_updated_at: as for update_task."""
    values = _validated(TaskReplace, data).model_dump()
    return _change(session, user_id, task_id, values, expected_updated_at)


@for_owner
def delete_task(session: Session, user_id: str, task_id: int) -> bool:
    """Delete user_id's task; False if there is no such task (or it is already gone)."""
    where = _where(user_id, task_id)
    if where is None:
        owner(user_id)
        return False
    return _write(session, sa.delete(TASKS).where(*where).returning(TASKS.c.id)) is not None
