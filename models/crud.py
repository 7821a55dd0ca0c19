"""Data access, always scoped to one owner: another user's task is "not found" (None/False)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, SQLModel, col, select

from models.task import Task, TaskCreate, TaskUpdate, UserId

MAX_PAGE = 100


class _Owner(SQLModel):
    user_id: UserId


def _owner(user_id: str) -> str:
    """Validate the owner id like the table's rules do, before any SQL is sent."""
    return _Owner(user_id=user_id).user_id


def create_task(session: Session, user_id: str, data: TaskCreate) -> Task:
    """Insert a task owned by user_id and return it with its generated fields."""
    task = Task.model_validate(data.model_dump(), update={"user_id": user_id})
    session.add(task)
    session.commit()
    session.refresh(task)
    return task


def get_task(session: Session, user_id: str, task_id: int) -> Task | None:
    """The task with this id if user_id owns it, else None."""
    stmt = select(Task).where(Task.id == task_id, Task.user_id == _owner(user_id))
    return session.exec(stmt).first()


def list_tasks(
    session: Session,
    user_id: str,
    *,
    complete: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Sequence[Task]:
    """A page of user_id's tasks, newest first, optionally only (in)complete ones."""
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise ValueError(f"limit must be 1..{MAX_PAGE} and offset >= 0")
    stmt = select(Task).where(Task.user_id == _owner(user_id))
    if complete is not None:
        stmt = stmt.where(Task.complete == complete)
    stmt = stmt.order_by(col(Task.created_at).desc(), col(Task.id).desc())
    return session.exec(stmt.limit(limit).offset(offset)).all()


def update_task(session: Session, user_id: str, task_id: int, data: TaskUpdate) -> Task | None:
    """Apply the fields set in data to user_id's task; None if there is no such task."""
    task = get_task(session, user_id, task_id)
    if task is None:
        return None
    task.sqlmodel_update(data.model_dump(exclude_unset=True))
    session.add(task)
    session.commit()
    session.refresh(task)
    return task


def delete_task(session: Session, user_id: str, task_id: int) -> bool:
    """Delete user_id's task; False if there is no such task."""
    task = get_task(session, user_id, task_id)
    if task is None:
        return False
    session.delete(task)
    session.commit()
    return True
