"""The list of a user's tasks (SPEC "The list, v1.1"): filters, sorts, keyset pages, count.

Every query is one index range of the owner's rows in the order asked for (indexes in the
models, built by 0002 and 0009), read until the page is full: no sort of the user's
whole list and no row of another user. Pages are keyset pages: the opaque cursor holds
the sort key and id of the last row shown, so page 1000 costs what page 1 costs.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from sqlalchemy.dialects import postgresql
from sqlmodel import Session

from models.crud import BIGINT_MAX, TASKS, for_owner, invalid, owner
from models.errors import InvalidArgument
from models.task import TAGS_MAX, DueDate, Priority, Tag, TaskRead, _no_nul

MAX_PAGE = 1000
SEARCH_MAX = 200
TRIGRAM = 3
CURSOR_MAX = 600
Status = Literal["all", "pending", "completed"]
SortBy = Literal["created_at", "due_date", "priority", "title"]
SortOrder = Literal["asc", "desc"]
BAD_CURSOR = "is not a cursor of this list: ask for the first page again (without cursor)"


class ListQuery(BaseModel):
    """The list's arguments, validated before any SQL (also usable as a route's query model)."""

    model_config = ConfigDict(extra="forbid")

    status: Status = "all"
    priority: Priority | None = None
    tags: Annotated[list[Tag], Field(max_length=TAGS_MAX)] | None = None
    search: (
        Annotated[
            str, StringConstraints(min_length=1, max_length=SEARCH_MAX), AfterValidator(_no_nul)
        ]
        | None
    ) = None
    due_before: DueDate | None = None
    due_after: DueDate | None = None
    sort_by: SortBy = "created_at"
    sort_order: SortOrder = "desc"
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)
    cursor: Annotated[str, StringConstraints(max_length=CURSOR_MAX)] | None = None


class TaskPage(BaseModel):
    """One page: the client's `{"tasks": [...], "count": N}`, plus where to go on."""

    tasks: list[TaskRead]
    count: int | None = Field(description="all tasks matching the filters (None: not asked)")
    has_next: bool
    next_cursor: str | None = None


def _encode(query: ListQuery, value: Any, task_id: int) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    payload = json.dumps([query.sort_by, query.sort_order, value, task_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode(query: ListQuery) -> tuple[Any, int] | None:
    """(sort key, id) of the row the cursor points after; InvalidArgument if it is not one."""
    if query.cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(query.cursor + "=" * (-len(query.cursor) % 4))
        sort_by, order, value, task_id = json.loads(raw)
        if (sort_by, order) != (query.sort_by, query.sort_order):
            raise ValueError("another sort")
        if (
            isinstance(task_id, bool)
            or not isinstance(task_id, int)
            or not 0 < task_id <= BIGINT_MAX
        ):
            raise ValueError("id")
        if sort_by in ("created_at", "due_date") and value is not None:
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise ValueError("naive")
        elif sort_by == "priority":
            value = Priority(value)
        elif sort_by == "title" and not (isinstance(value, str) and "\x00" not in value):
            raise ValueError("title")
        if value is None and sort_by != "due_date":
            raise ValueError("null key")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidArgument.of("cursor", BAD_CURSOR) from None
    return value, task_id


def _filters(user_id: str, query: ListQuery) -> list[Any]:
    c = TASKS.c
    where: list[Any] = [c.user_id == user_id]
    if query.status != "all":
        where.append(c.complete.is_(query.status == "completed"))
    if query.priority is not None:
        where.append(c.priority == query.priority)
    if query.tags:
        where.append(c.tags.overlap(sa.cast(query.tags, postgresql.ARRAY(sa.Text))))
    if query.search is not None:
        escaped = query.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        where.append(
            sa.or_(c.title.ilike(pattern, escape="\\"), c.description.ilike(pattern, escape="\\"))
        )
    if query.due_before is not None:
        where.append(c.due_date < query.due_before)
    if query.due_after is not None:
        where.append(c.due_date >= query.due_after)
    return where


def _select(where: list[Any], order: list[tuple[str, bool]], n: int, via_search: bool) -> Any:
    """At most n rows matching where, ordered by (column, descending) pairs.

    A trigram search first collects its matches through the GIN index (a MATERIALIZED CTE),
    then orders and cuts them: its cost follows the number of matches, never the walk of a
    whole sort range that the planner may otherwise pick on a misestimate.
    """
    source: Any = TASKS
    stmt = sa.select(*TASKS.c).where(*where)
    if via_search:
        source = stmt.cte("matches").prefix_with("MATERIALIZED")
        stmt = sa.select(*source.c)
    columns = [source.c[name].desc() if desc else source.c[name].asc() for name, desc in order]
    return stmt.order_by(*columns).limit(n)


def _range(
    where: list[Any], key: Any, desc: bool, after: tuple[Any, int] | None, n: int, search: bool
) -> Any:
    """Rows in (key, id) order, after the cursor's (key, id), at most n."""
    id_ = TASKS.c.id
    if after is not None:
        pair = sa.tuple_(key, id_)
        bound = sa.tuple_(sa.literal(after[0], key.type), sa.literal(after[1], id_.type))
        where = [*where, pair < bound if desc else pair > bound]
    return _select(where, [(key.name, desc), ("id", desc)], n, search)


def _rows(session: Session, where: list[Any], query: ListQuery, n: int) -> list[Any]:
    """Up to n rows of the page, in order, starting after the cursor."""
    after = _decode(query)
    desc = query.sort_order == "desc"
    key = TASKS.c[query.sort_by]
    # A pattern shorter than a trigram cannot narrow the GIN index: leave it to the planner.
    search = query.search is not None and len(query.search) >= TRIGRAM
    if query.sort_by != "due_date":
        return list(session.execute(_range(where, key, desc, after, n, search)).mappings())
    # Tasks without a due date come last in both directions: first the range of dated
    # rows, then (only if the page is not full yet) the range of undated ones, by id.
    rows: list[Any] = []
    if after is None or after[0] is not None:
        dated = [*where, key.is_not(None)]
        rows = list(session.execute(_range(dated, key, desc, after, n, search)).mappings())
    if len(rows) < n:
        undated = [*where, key.is_(None)]
        if after is not None and after[0] is None:
            undated.append(TASKS.c.id < after[1] if desc else TASKS.c.id > after[1])
        stmt = _select(undated, [("id", desc)], n - len(rows), search)
        rows += list(session.execute(stmt).mappings())
    return rows


@for_owner
def list_tasks(
    session: Session,
    user_id: str,
    *,
    with_count: bool = True,
    **arguments: Any,
) -> TaskPage:
    """A page of user_id's tasks matching the filters, in the order asked for.

    Arguments (each optional, see ListQuery): status ("all", "pending", "completed"),
    priority, tags (any of), search (case-insensitive substring of title or description),
    due_before (exclusive), due_after (inclusive), sort_by ("created_at", "due_date",
    "priority", "title"), sort_order ("asc", "desc"), limit (1..1000, default 100), cursor
    (the previous page's next_cursor). Ties are broken by id; tasks without a due date
    come last when sorting by due date. with_count=False skips the total count; v1.0's
    complete=True/False still works (status "completed"/"pending").
    Raises InvalidArgument (HTTP 422) for a bad owner id or argument, before any SQL.
    """
    user_id = owner(user_id)
    complete = arguments.pop("complete", None)  # v1.0's filter: the same as status
    if complete is not None:
        if not isinstance(complete, bool):
            raise InvalidArgument.of("complete", "must be true, false or None")
        arguments.setdefault("status", "completed" if complete else "pending")
    try:
        query = ListQuery.model_validate(arguments)
    except ValidationError as exc:
        raise invalid(exc) from None
    where = _filters(user_id, query)
    rows = _rows(session, where, query, query.limit + 1)
    has_next = len(rows) > query.limit
    rows = rows[: query.limit]
    next_cursor = None
    if has_next:
        last = rows[-1]
        next_cursor = _encode(query, last[query.sort_by], last["id"])
    count = None
    if with_count:
        count = session.execute(
            sa.select(sa.func.count()).select_from(TASKS).where(*where)
        ).scalar_one()
    return TaskPage(
        tasks=[TaskRead.model_validate(dict(r)) for r in rows],
        count=count,
        has_next=has_next,
        next_cursor=next_cursor,
    )
