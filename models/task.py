"""The `tasks` table and its API schemas (data contract v1.0.0): the field rules live here once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import AfterValidator, StringConstraints, field_validator
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from models.naming import NAMING_CONVENTION

# Deterministic names for every constraint and index (no server-generated names).
SQLModel.metadata.naming_convention = NAMING_CONVENTION

USER_ID_MAX = 255
TITLE_MAX = 200
DESCRIPTION_MAX = 1000
# Exactly the characters Python's str.isspace() accepts (a test scans all of Unicode), so
# "blank" means the same in the API schemas and the CHECKs (PostgreSQL's \s depends on
# the locale). Written out: scanning 1.1M code points at import costs 65 ms per deploy.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
    "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# A PostgreSQL regular expression matching any character that is not in WHITESPACE.
NOT_BLANK_REGEX = "[^" + "".join(f"\\u{ord(c):04x}" for c in WHITESPACE) + "]"


def _clean(value: str) -> str:
    """Reject what PostgreSQL cannot store (NUL) and what the contract calls blank."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\x00) characters")
    if not value.strip(WHITESPACE):
        raise ValueError("must not be empty or whitespace only")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\x00) characters")
    return value


UserId = Annotated[str, StringConstraints(max_length=USER_ID_MAX), AfterValidator(_clean)]
Title = Annotated[str, StringConstraints(max_length=TITLE_MAX), AfterValidator(_clean)]
Description = Annotated[str, StringConstraints(max_length=DESCRIPTION_MAX), AfterValidator(_no_nul)]


class UTCDateTime(TypeDecorator[datetime]):
    """timestamptz that always comes back as an aware UTC datetime, whatever the TimeZone."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.astimezone(UTC)


def _timestamp(**kwargs: Any) -> Any:
    return Field(
        default=None,
        sa_type=UTCDateTime,
        sa_column_kwargs={"server_default": sa.func.now(), **kwargs},
        nullable=False,
    )


class TaskBase(SQLModel):
    """The fields a client may write, with their limits (inherited by every schema below)."""

    title: Title = Field(max_length=TITLE_MAX)
    description: Description | None = Field(default=None, max_length=DESCRIPTION_MAX)


class Task(TaskBase, table=True):
    """The `tasks` table. The database enforces every rule too (CHECKs, lengths, trigger)."""

    __tablename__ = "tasks"
    __table_args__ = (
        sa.CheckConstraint(f"user_id ~ '{NOT_BLANK_REGEX}'", name="user_id_not_blank"),
        sa.CheckConstraint(f"title ~ '{NOT_BLANK_REGEX}'", name="title_not_blank"),
        # The list query, newest first: all of a user's tasks (this one also serves lookups
        # by user_id), and only the open or only the done ones (the next), each a plain
        # index range in the query's order, so neither needs a sort however many tasks.
        sa.Index(
            "ix_tasks_user_id_created_at_id",
            "user_id",
            sa.text("created_at DESC"),
            sa.text("id DESC"),
        ),
        sa.Index(
            "ix_tasks_user_id_complete_created_at_id",
            "user_id",
            "complete",
            sa.text("created_at DESC"),
            sa.text("id DESC"),
        ),
    )

    id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger, sa.Identity(always=True), primary_key=True),
    )
    user_id: UserId = Field(max_length=USER_ID_MAX)
    complete: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    created_at: datetime | None = _timestamp()
    # Refreshed by the tasks_set_updated_at trigger on every UPDATE, ORM or raw SQL.
    updated_at: datetime | None = _timestamp(server_onupdate=sa.FetchedValue())


class TaskCreate(TaskBase):
    """POST body: the owner comes from auth, never from the client."""


class TaskUpdate(SQLModel):
    """PATCH body: every field optional; only the fields sent are changed."""

    title: Title | None = None
    description: Description | None = None
    complete: bool | None = None

    @field_validator("title", "complete")
    @classmethod
    def _not_null(cls, value: object) -> object:
        """title and complete may be left out (defaults are not validated), not sent as null."""
        if value is None:
            raise ValueError("may be omitted, but not set to null")
        return value


class TaskRead(TaskBase):
    """Response body: all seven fields; timestamps serialize as ISO 8601 in UTC."""

    id: int
    user_id: str
    complete: bool
    created_at: datetime
    updated_at: datetime
