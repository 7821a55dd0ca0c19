"""The schema of the Todo app's data layer: models, API schemas, engine/session, data access."""

from models.crud import create_task, delete_task, get_task, list_tasks, update_task
from models.db import get_engine, get_session, make_engine, parse_url
from models.errors import DatabaseError
from models.settings import Settings
from models.task import NAMING_CONVENTION, Task, TaskCreate, TaskRead, TaskUpdate

__all__ = [
    "NAMING_CONVENTION",
    "DatabaseError",
    "Settings",
    "Task",
    "TaskCreate",
    "TaskRead",
    "TaskUpdate",
    "create_task",
    "delete_task",
    "get_engine",
    "get_session",
    "get_task",
    "list_tasks",
    "make_engine",
    "parse_url",
    "update_task",
]
