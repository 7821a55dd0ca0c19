"""A new table, right the first time: inherit `TableBase`, or `TenantTableBase` for a table
of one user's rows (README/docs: "What autogenerate writes").

    class Note(TenantTableBase, table=True):
        __tablename__ = "notes"
        body: str = Field(max_length=500)

gives, with nothing else to write:
- `id`: bigint, `GENERATED ALWAYS AS IDENTITY`, the primary key (never SERIAL or integer:
  the lint, check 8, refuses those; `tasks.id` is the same);
- `created_at`, `updated_at`: timestamptz NOT NULL DEFAULT now(), read back as aware UTC
  datetimes. `updated_at` is set by the database (`server_onupdate`), so autogenerate
  writes the trigger with the new table (`ops.create_updated_at_trigger`): every UPDATE,
  ORM or raw SQL, moves updated_at and keeps created_at;
- with `TenantTableBase`, `user_id`: varchar(255) NOT NULL, indexed, and the CHECK
  `ck_<table>_user_id_not_blank` with the same "not blank" rule as `tasks.user_id` (and
  the same API validation). Its row-level security is declared apart, in
  models/policies.py (check 13).

The columns come first, in that order. A table's own `__table_args__` keeps the CHECK (it
is added when the table is mapped, not through `__table_args__`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy import event
from sqlmodel import Field, SQLModel

from models.task import NOT_BLANK_REGEX, USER_ID_MAX, UserId, UTCDateTime


class PerColumn(Sequence[Any]):
    """`sa_column_args` made anew for every table that inherits the field: a schema item
    (an Identity, a default) belongs to one column, and SQLModel reads the args once per
    table (`list(sa_column_args)`)."""

    def __init__(self, make: Callable[[], list[Any]]) -> None:
        self.make = make

    def __iter__(self) -> Iterator[Any]:
        return iter(self.make())

    def __len__(self) -> int:
        return len(self.make())

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self.make()[index]


def _now() -> list[Any]:
    return [sa.DefaultClause(sa.func.now())]


class TableBase(SQLModel):
    """Every new table: a bigint identity id, and created_at/updated_at kept by the database."""

    id: int | None = Field(
        default=None,
        primary_key=True,
        sa_type=sa.BigInteger,
        sa_column_args=PerColumn(lambda: [sa.Identity(always=True)]),
    )
    created_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime, sa_column_args=PerColumn(_now), nullable=False
    )
    updated_at: datetime | None = Field(
        default=None,
        sa_type=UTCDateTime,
        sa_column_args=PerColumn(lambda: [*_now(), sa.FetchedValue(for_update=True)]),
        nullable=False,
    )


class TenantTableBase(TableBase):
    """A table of one user's rows: TableBase plus user_id as tasks has it (varchar(255)
    NOT NULL, not blank, indexed)."""

    user_id: UserId = Field(max_length=USER_ID_MAX, index=True)


@event.listens_for(TenantTableBase, "instrument_class", propagate=True)
def _user_id_not_blank(mapper: Any, cls: type) -> None:
    """ck_<table>_user_id_not_blank on each table that inherits TenantTableBase."""
    mapper.local_table.append_constraint(
        sa.CheckConstraint(f"user_id ~ '{NOT_BLANK_REGEX}'", name="user_id_not_blank")
    )
