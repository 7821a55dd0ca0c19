"""The schema of the Todo app's data layer: models, API schemas, engine/session, data access.

Names are imported on first use: `alembic upgrade` needs only the settings and the
engine helpers, and importing the models (sqlmodel, pydantic) would add ~200 ms to every
deploy. `from models import Task` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.crud import create_task, delete_task, get_task, replace_task, update_task
    from models.db import get_engine, get_session, make_engine, parse_url
    from models.errors import Conflict, DatabaseError, InvalidArgument, NothingToUpdate
    from models.listing import ListQuery, TaskPage, iter_tasks, list_tasks
    from models.naming import NAMING_CONVENTION
    from models.security import acting_as, bind_user, get_user_session
    from models.settings import Settings
    from models.task import (
        Priority,
        Recurring,
        Task,
        TaskCreate,
        TaskRead,
        TaskReplace,
        TaskUpdate,
    )

# Where each public name lives.
_HOME = {
    "NAMING_CONVENTION": "models.naming",
    "Conflict": "models.errors",
    "DatabaseError": "models.errors",
    "InvalidArgument": "models.errors",
    "NothingToUpdate": "models.errors",
    "iter_tasks": "models.listing",
    "ListQuery": "models.listing",
    "TaskPage": "models.listing",
    "Priority": "models.task",
    "Recurring": "models.task",
    "TaskReplace": "models.task",
    "replace_task": "models.crud",
    "Settings": "models.settings",
    "acting_as": "models.security",
    "bind_user": "models.security",
    "get_user_session": "models.security",
    "Task": "models.task",
    "TaskCreate": "models.task",
    "TaskRead": "models.task",
    "TaskUpdate": "models.task",
    "create_task": "models.crud",
    "delete_task": "models.crud",
    "get_engine": "models.db",
    "get_session": "models.db",
    "get_task": "models.crud",
    "list_tasks": "models.listing",
    "make_engine": "models.db",
    "parse_url": "models.db",
    "update_task": "models.crud",
}
__all__ = [
    "NAMING_CONVENTION",
    "Conflict",
    "DatabaseError",
    "InvalidArgument",
    "ListQuery",
    "NothingToUpdate",
    "Priority",
    "Recurring",
    "Settings",
    "Task",
    "TaskCreate",
    "TaskPage",
    "TaskRead",
    "TaskReplace",
    "TaskUpdate",
    "acting_as",
    "bind_user",
    "create_task",
    "delete_task",
    "get_engine",
    "get_session",
    "get_task",
    "get_user_session",
    "iter_tasks",
    "list_tasks",
    "make_engine",
    "parse_url",
    "replace_task",
    "update_task",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its home module on first use."""
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
