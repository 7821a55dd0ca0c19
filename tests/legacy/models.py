"""The app's own models before this project, as its `create_all()` built them (test fixtures).

Each generation on a MetaData of its own (never SQLModel.metadata, never imported by
models/ or migrations/), written as ashfaq1192/hackathon-todo-fullstack has them:
- `Stage1Task`: the Stage 1 plan's 7-field Task (specs/archive/phase-2/002-database-setup/
  data-model.md, "SQLModel Implementation"; ../shared/seed/ is that plan);
- `Phase2Task`: phase-2-fullstack/backend/src/models/task.py (priority, a TaskPriority enum);
- `Phase3Task`: phase-3-chatbot/backend/src/models/task.py (also due_date, recurring,
  recurring_end_date, tags).

The app runs `SQLModel.metadata.create_all(engine)` at every start-up (src/main.py ->
init_db): it creates missing tables, and the native enum types of its models even when the
table already exists (how `taskpriority` and `recurringtype` appear beside a varchar column).

One deliberate difference: the app pinned sqlmodel>=0.0.22 (December 2025), whose `datetime`
fields were `timestamp without time zone`; sqlmodel 0.0.45 changed the default to
timestamptz, so these fixtures name the old type (`NAIVE`) to build what the app built.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

NAIVE = sa.DateTime(timezone=False)  # sqlmodel <= 0.0.44's type for a datetime field


class Stage1Base(SQLModel, registry=registry()):
    pass


class Stage1Task(Stage1Base, table=True):
    """The Stage 1 plan's Task: SERIAL id, VARCHAR user_id (no length), naive timestamps."""

    __tablename__ = "tasks"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(index=True, nullable=False)
    title: str = Field(max_length=200, nullable=False)
    description: str | None = Field(default=None, max_length=1000)
    complete: bool = Field(default=False)
    created_at: datetime = Field(default_factory=datetime.utcnow, sa_type=NAIVE)
    updated_at: datetime = Field(default_factory=datetime.utcnow, sa_type=NAIVE)


class TaskPriority(StrEnum):
    """Upstream's enum: member names in lower case, so the type's labels are too."""

    low = "low"
    medium = "medium"
    high = "high"


class UpperTaskPriority(StrEnum):
    """The enum as 003_fix_priority_enum_case.py found it in the database: upper-case
    labels (LOW, MEDIUM, HIGH), i.e. a model with upper-case member names. Upstream's stored
    models name them in lower case; the fix script is the evidence for this one."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class RecurringType(StrEnum):
    none = "none"
    daily = "daily"
    weekly = "weekly"
    monthly = "monthly"
    yearly = "yearly"


class Phase2Base(SQLModel, registry=registry()):
    pass


class Phase2Task(Phase2Base, table=True):
    """Phase II: priority a native enum `taskpriority`, NOT NULL, no server default."""

    __tablename__ = "tasks"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(index=True, min_length=1)
    title: str = Field(max_length=200, min_length=1)
    description: str | None = Field(default=None, max_length=1000)
    complete: bool = Field(default=False)
    priority: TaskPriority = Field(default=TaskPriority.medium)
    created_at: datetime = Field(default_factory=datetime.utcnow, sa_type=NAIVE)
    updated_at: datetime = Field(default_factory=datetime.utcnow, sa_type=NAIVE)


class UpperPhase2Base(SQLModel, registry=registry()):
    pass


class UpperPhase2Task(UpperPhase2Base, table=True):
    """Phase II with the upper-case enum (see UpperTaskPriority)."""

    __tablename__ = "tasks"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(index=True, min_length=1)
    title: str = Field(max_length=200, min_length=1)
    description: str | None = Field(default=None, max_length=1000)
    complete: bool = Field(default=False)
    # The class was TaskPriority then: create_all() names the type after it.
    priority: UpperTaskPriority = Field(
        default=UpperTaskPriority.MEDIUM, sa_type=sa.Enum(UpperTaskPriority, name="taskpriority")
    )
    created_at: datetime = Field(default_factory=datetime.utcnow, sa_type=NAIVE)
    updated_at: datetime = Field(default_factory=datetime.utcnow, sa_type=NAIVE)


class Phase3Base(SQLModel, registry=registry()):
    pass


class Phase3Task(Phase3Base, table=True):
    """Phase III. Run against a database whose tasks table exists, create_all() leaves the
    table alone and creates the enum types `taskpriority` and `recurringtype` if missing."""

    __tablename__ = "tasks"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(index=True, min_length=1)
    title: str = Field(max_length=200, min_length=1)
    description: str | None = Field(default=None, max_length=1000)
    complete: bool = Field(default=False)
    priority: TaskPriority = Field(default=TaskPriority.medium)
    due_date: datetime | None = Field(default=None, sa_type=NAIVE)
    recurring: RecurringType = Field(default=RecurringType.none)
    recurring_end_date: datetime | None = Field(default=None, sa_type=NAIVE)
    tags: list[str] = Field(
        default_factory=list,
        sa_column=sa.Column(sa.ARRAY(sa.String), nullable=False, server_default="{}"),
    )
    created_at: datetime = Field(default_factory=datetime.utcnow, sa_type=NAIVE)
    updated_at: datetime = Field(default_factory=datetime.utcnow, sa_type=NAIVE)
