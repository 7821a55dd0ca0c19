"""The `tasks` table and its API schemas (data contract v1.1.0): the field rules live here once."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import AfterValidator, StringConstraints, field_validator, model_validator
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from models.naming import NAMING_CONVENTION

# Deterministic names for every constraint and index (no server-generated names).
SQLModel.metadata.naming_convention = NAMING_CONVENTION

USER_ID_MAX = 255
TITLE_MAX = 200
DESCRIPTION_MAX = 1000
TAG_MAX = 50
TAGS_MAX = 20
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
    """Reject what PostgreSQL cannot store (NUL, lone surrogates) and what the contract
    calls blank."""
    _no_nul(value)
    if not value.strip(WHITESPACE):
        raise ValueError("must not be empty or whitespace only")
    return value


def _no_nul(value: str) -> str:
    """Reject what PostgreSQL cannot store: NUL, and lone surrogates (no UTF-8 holds them)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\x00) characters")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


def _unique_tags(tags: list[str]) -> list[str]:
    """No two tags of a task may differ only in case (the database compares with lower())."""
    seen: set[str] = set()
    for tag in tags:
        if tag.lower() in seen:
            raise ValueError(f"tag {tag!r} is repeated (tags are compared case-insensitively)")
        seen.add(tag.lower())
    return tags


UserId = Annotated[str, StringConstraints(max_length=USER_ID_MAX), AfterValidator(_clean)]
Title = Annotated[str, StringConstraints(max_length=TITLE_MAX), AfterValidator(_clean)]
Description = Annotated[str, StringConstraints(max_length=DESCRIPTION_MAX), AfterValidator(_no_nul)]
Tag = Annotated[str, StringConstraints(max_length=TAG_MAX), AfterValidator(_clean)]
Tags = Annotated[list[Tag], Field(max_length=TAGS_MAX), AfterValidator(_unique_tags)]


class UTCDateTime(TypeDecorator[datetime]):
    """timestamptz that always comes back as an aware UTC datetime, whatever the TimeZone."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.astimezone(UTC)


class Priority(StrEnum):
    """Stored as the native enum task_priority: it sorts low < medium < high (declaration order)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Recurring(StrEnum):
    """Stored as the native enum task_recurring; anything but NONE needs a due_date."""

    NONE = "none"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    YEARLY = "yearly"


def _enum(cls: type[StrEnum], name: str) -> sa.Enum:
    """A native PostgreSQL enum of cls's values (the client's strings), in declaration order."""
    return sa.Enum(cls, name=name, values_callable=lambda e: [m.value for m in e])


def _as_utc(value: datetime) -> datetime:
    """A timestamp without a zone is read as UTC; any other is converted to UTC, which must
    stay within years 1-9999 (0001-01-01T00:00:00+14:00 is in year 0 in UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be within years 1-9999 once converted to UTC") from None


DueDate = Annotated[datetime, AfterValidator(_as_utc)]


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
    priority: Priority = Field(
        default=Priority.MEDIUM,
        sa_type=_enum(Priority, "task_priority"),
        sa_column_kwargs={"server_default": Priority.MEDIUM.value},
        nullable=False,
    )
    due_date: DueDate | None = Field(default=None, sa_type=UTCDateTime)
    recurring: Recurring = Field(
        default=Recurring.NONE,
        sa_type=_enum(Recurring, "task_recurring"),
        sa_column_kwargs={"server_default": Recurring.NONE.value},
        nullable=False,
    )
    recurring_end_date: DueDate | None = Field(default=None, sa_type=UTCDateTime)
    tags: Tags = Field(
        default_factory=list,
        sa_type=postgresql.ARRAY(sa.Text),
        sa_column_kwargs={"server_default": sa.text("'{}'::text[]")},
        nullable=False,
    )

    @model_validator(mode="after")
    def _recurrence_rules(self) -> Any:
        """A recurrence needs a due date; an end date needs a recurrence and is not before it."""
        check_recurrence(self.recurring, self.due_date, self.recurring_end_date)
        return self


def check_recurrence(
    recurring: Recurring | None, due_date: datetime | None, end: datetime | None
) -> None:
    """The rules of ck_tasks_recurring_*; None for a value not known here (a partial update)."""
    if recurring not in (None, Recurring.NONE) and due_date is None:
        raise ValueError("recurring other than 'none' needs a due_date")
    if end is not None:
        if recurring == Recurring.NONE:
            raise ValueError("recurring_end_date needs recurring other than 'none'")
        if due_date is not None and end < due_date:
            raise ValueError("recurring_end_date must not be before due_date")


class Task(TaskBase, table=True):
    """The `tasks` table. The database enforces every rule too (CHECKs, lengths, trigger)."""

    __tablename__ = "tasks"
    __table_args__ = (
        sa.CheckConstraint(f"user_id ~ '{NOT_BLANK_REGEX}'", name="user_id_not_blank"),
        sa.CheckConstraint(f"title ~ '{NOT_BLANK_REGEX}'", name="title_not_blank"),
        sa.CheckConstraint(
            "recurring = 'none' OR due_date IS NOT NULL", name="recurring_needs_due_date"
        ),
        sa.CheckConstraint(
            "recurring_end_date IS NULL "
            "OR (recurring <> 'none' AND recurring_end_date >= due_date)",
            name="recurring_end_date_valid",
        ),
        # tasks_tags_valid(): 0..20 tags, each 1..50 characters, not blank, no two equal
        # after lower(); an IMMUTABLE SQL function written by hand in revision 0007.
        sa.CheckConstraint("tasks_tags_valid(tags)", name="tags_valid"),
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
        # The other sorts, each one index range in either direction (ties by id). due_date
        # NULLs sit at the end of the range; the list reads them as a second range.
        sa.Index("ix_tasks_user_id_due_date_id", "user_id", "due_date", "id"),
        sa.Index("ix_tasks_user_id_priority_id", "user_id", "priority", "id"),
        sa.Index("ix_tasks_user_id_title_id", "user_id", "title", "id"),
        # "Any of these tags" and the substring search, within one user's rows: GIN indexes
        # with user_id as a key (btree_gin), trigrams for ILIKE '%...%' (pg_trgm).
        # fastupdate off: no pending-list cleanup in some request's time (see 0009).
        sa.Index(
            "ix_tasks_user_id_tags",
            "user_id",
            "tags",
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
        ),
        sa.Index(
            "ix_tasks_user_id_title_description",
            "user_id",
            "title",
            "description",
            postgresql_using="gin",
            postgresql_ops={"title": "gin_trgm_ops", "description": "gin_trgm_ops"},
            postgresql_with={"fastupdate": "off"},
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


class TaskReplace(TaskBase):
    """PUT body: title, complete and priority required; every other field its default."""

    complete: bool
    priority: Priority


class TaskUpdate(SQLModel):
    """PATCH body: every field optional; only the fields sent are changed."""

    title: Title | None = None
    description: Description | None = None
    complete: bool | None = None
    priority: Priority | None = None
    due_date: DueDate | None = None
    recurring: Recurring | None = None
    recurring_end_date: DueDate | None = None
    tags: Tags | None = None

    @field_validator("title", "complete", "priority", "recurring", "tags")
    @classmethod
    def _not_null(cls, value: object) -> object:
        """These may be left out (defaults are not validated), not sent as null."""
        if value is None:
            raise ValueError("may be omitted, but not set to null")
        return value

    @model_validator(mode="after")
    def _recurrence_rules(self) -> Any:
        """The recurrence rules among the fields sent (the database checks the whole row)."""
        sent = self.model_fields_set
        needs_due = "recurring" in sent and self.recurring != Recurring.NONE
        if needs_due and "due_date" in sent and self.due_date is None:
            raise ValueError("recurring other than 'none' needs a due_date")
        if self.recurring_end_date is not None:
            if "recurring" in sent and self.recurring == Recurring.NONE:
                raise ValueError("recurring_end_date needs recurring other than 'none'")
            if self.due_date is not None and self.recurring_end_date < self.due_date:
                raise ValueError("recurring_end_date must not be before due_date")
        return self


class TaskRead(TaskBase):
    """Response body: every field; timestamps serialize as ISO 8601 in UTC."""

    id: int
    user_id: str
    complete: bool
    created_at: datetime
    updated_at: datetime
