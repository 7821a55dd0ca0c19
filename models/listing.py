"""The list of a user's tasks (SPEC "The list, v1.1"): filters, sorts, keyset pages, count.

Every page is one index range of the user's rows in the order asked for, read until the
page is full, as the app role through the row-level security policies. Under them
PostgreSQL uses only LEAKPROOF operators as index conditions: timestamps, text, ids and
booleans are; ILIKE (search), && (tags) and the enum comparisons (priority) are not. So
a page whose index condition needs one of those gets its ids from `tasks_page_ids(...)`,
a SECURITY DEFINER function of revision 0012 that runs the same query as the table's
owner for the transaction's user only, and reads the rows by id through the policies;
every other page is read through the policies directly (_direct). The count, asked for
explicitly, comes from `tasks_count(...)`. Pages are keyset pages: the opaque cursor
(models/cursor.py) holds the last row's sort key and id, so page 1000 costs what page 1
costs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from sqlmodel import Session

from models.crud import TASKS, for_owner, invalid, owner
from models.cursor import CURSOR_MAX, BadCursor, seal, unseal
from models.errors import InvalidArgument
from models.settings import Settings
from models.task import TAGS_MAX, DueDate, Priority, Tag, TaskRead, _no_nul

MAX_PAGE = 1000
SEARCH_MAX = 200
Status = Literal["all", "pending", "completed"]
SortBy = Literal["created_at", "due_date", "priority", "title"]
SortOrder = Literal["asc", "desc"]
BAD_CURSOR = "is not a cursor of this list: ask for the first page again (without cursor)"

# The SECURITY DEFINER functions of revision 0012, each with the calls by which the schema
# check (tests/checks/definer.py) proves, as the app role, that it returns only the bound
# user's rows: every sort both ways, each filter, a cursor. PROBE_ROWS gives each of the
# check's two users the same tasks (:user is the owner), so that a leak shows as a change.
_EVERY = "NULL, NULL, NULL, NULL, NULL, NULL"
_SOME = "false, 'high', '{home,work}', 'ilk', '2000-01-01', NULL"
# A cursor before every row, per sort and order: (after_id, after_time, priority, title).
_START = {
    ("created_at", "true"): "9223372036854775807, '9999-01-01', NULL, NULL",
    ("created_at", "false"): "0, '0001-01-01', NULL, NULL",
    ("priority", "true"): "9223372036854775807, NULL, 'high', NULL",
    ("priority", "false"): "0, NULL, 'low', NULL",
    ("title", "true"): "9223372036854775807, NULL, NULL, 'zzz'",
    ("title", "false"): "0, NULL, NULL, ''",
}
_START["due_date", "true"] = _START["created_at", "true"]
_START["due_date", "false"] = _START["created_at", "false"]
DEFINER_PROBES: dict[str, tuple[str, ...]] = {
    "tasks_page_ids": tuple(
        f"SELECT tasks_page_ids('{sort}', {desc}, 1001, {after}, {filters})"
        for (sort, desc), start in _START.items()
        for after in ("NULL, NULL, NULL, NULL", start)
        for filters in (_EVERY, _SOME)
    ),
    "tasks_count": (f"SELECT tasks_count({_EVERY})", f"SELECT tasks_count({_SOME})"),
}
PROBE_ROWS = """
INSERT INTO tasks (user_id, title, description, priority, due_date, tags)
SELECT :user, 'milk ' || i, CASE WHEN i % 2 = 0 THEN 'silk' END,
    (ARRAY['low', 'medium', 'high'])[1 + i % 3]::task_priority,
    CASE WHEN i % 4 <> 0 THEN timestamptz '2026-01-01' + i * interval '1 day' END,
    CASE WHEN i % 3 = 0 THEN ARRAY['home'] ELSE ARRAY['work', 'x'] END
FROM generate_series(1, 12) AS i
"""


class ListQuery(BaseModel):
    """The list's arguments, validated before any SQL (also usable as a route's query model).

    None, for any of them, means "not given": the default applies. That is how a web
    framework hands over a query parameter that the request left out.
    """

    model_config = ConfigDict(extra="forbid")

    status: Status = "all"
    priority: Priority | None = None
    tags: Annotated[list[Tag], Field(max_length=TAGS_MAX)] = []
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

    @model_validator(mode="before")
    @classmethod
    def _none_is_not_given(cls, data: Any) -> Any:
        """Drop None values (the default applies); one tag given as a plain string is a list."""
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if v is not None}
            if isinstance(data.get("tags"), str):
                data["tags"] = [data["tags"]]
        return data


class TaskPage(BaseModel):
    """One page: the client's `{"tasks": [...], "count": N}`, plus where to go on."""

    tasks: list[TaskRead]
    count: int | None = Field(
        description="all tasks matching the filters; None: not asked (with_count=False)"
    )
    has_next: bool
    next_cursor: str | None = None


# The page's rows, read by id through the policies, in the order tasks_page_ids gives;
# with the count, in the same statement (one round trip: a row of NULLs when the page is
# empty, so the count always comes back).
_COLUMNS = ", ".join(f"t.{c.name}" for c in TASKS.c)
_PAGE_IDS = """unnest(ARRAY(SELECT tasks_page_ids(
        sort_by => :sort_by, descending => :descending, page_size => :page_size,
        after_id => :after_id, after_time => :after_time,
        after_priority => CAST(:after_priority AS task_priority), after_title => :after_title,
        is_complete => :is_complete, with_priority => CAST(:priority AS task_priority),
        any_tags => CAST(:tags AS text[]), search => :search,
        due_after => :due_after, due_before => :due_before))) WITH ORDINALITY AS page(id, n)"""
_COUNT = """tasks_count(is_complete => :is_complete,
        with_priority => CAST(:priority AS task_priority), any_tags => CAST(:tags AS text[]),
        search => :search, due_after => :due_after, due_before => :due_before)"""
_COUNT_ONLY = sa.text(f"SELECT {_COUNT}")
_PAGE = sa.text(
    f"SELECT {_COLUMNS} FROM {_PAGE_IDS} JOIN tasks t ON t.id = page.id "
    "WHERE t.user_id = :user_id ORDER BY page.n"
).columns(*TASKS.c)
_PAGE_AND_COUNT = sa.text(
    f"WITH total AS MATERIALIZED (SELECT {_COUNT} AS n) "  # counted once, not once a row
    f"SELECT {_COLUMNS}, total.n AS total FROM total "
    f"LEFT JOIN ({_PAGE_IDS} JOIN tasks t ON t.id = page.id AND t.user_id = :user_id) "
    "ON true ORDER BY page.n"
).columns(*TASKS.c, sa.column("total", sa.BigInteger))


@functools.cache
def _configured_secret() -> str | None:
    return Settings.from_env().cursor_secret


def _secret(session: Session) -> str:
    """CURSOR_SECRET, or (unset) the URL of the database this session uses, password included."""
    configured = _configured_secret()
    if configured:
        return configured
    return session.get_bind().engine.url.render_as_string(hide_password=False)


def _context(user_id: str, query: ListQuery) -> list[bytes]:
    """What a cursor belongs to: this user, these filters, this sort (not the page size)."""
    dates = [d.isoformat() if d else None for d in (query.due_before, query.due_after)]
    filters = [query.status, query.priority, sorted(set(query.tags)), query.search, *dates]
    listing = json.dumps([*filters, query.sort_by, query.sort_order]).encode()
    return [user_id.encode("utf-8", "surrogatepass"), listing]


def _filters(query: ListQuery) -> dict[str, Any]:
    return {
        "is_complete": None if query.status == "all" else query.status == "completed",
        "priority": None if query.priority is None else query.priority.value,
        "tags": query.tags or None,
        "search": query.search,
        "due_after": query.due_after,
        "due_before": query.due_before,
    }


def _needs_definer(query: ListQuery, after_id: int | None) -> bool:
    """Whether the page needs an index condition the policies forbid: ILIKE (search), &&
    (tags), the task_priority comparisons (the priority sort's keyset, or its filter with
    that sort). Every other list is one index range the policies allow as it is."""
    by_priority = query.sort_by == "priority" and (after_id is not None or bool(query.priority))
    return query.search is not None or bool(query.tags) or by_priority


def _direct(
    session: Session, user_id: str, query: ListQuery, after: tuple[Any, int | None], n: int
) -> list[Any]:
    """Up to n rows of the page, read through the policies as one index range in the order
    asked for (two for the due date: the dated rows, then the undated ones), after the
    cursor's (key, id). Only for lists whose index conditions are LEAKPROOF: timestamps,
    text, ids, booleans (see _needs_definer); tasks_page_ids does the same for the others."""
    c, (key, after_id) = TASKS.c, after
    where: list[Any] = [c.user_id == user_id]
    if query.status != "all":
        where.append(c.complete.is_(query.status == "completed"))
    if query.priority is not None:
        where.append(c.priority == query.priority)
    if query.due_before is not None:
        where.append(c.due_date < query.due_before)
    if query.due_after is not None:
        where.append(c.due_date >= query.due_after)
    column, desc = c[query.sort_by], query.sort_order == "desc"

    def page(extra: list[Any], order: Any, past: Any, limit: int) -> list[Any]:
        stmt = sa.select(*c).where(*where, *extra)
        if past is not None:
            stmt = stmt.where(past)
        ordered = [order.desc(), c.id.desc()] if desc else [order.asc(), c.id.asc()]
        return list(session.execute(stmt.order_by(*ordered).limit(limit)).mappings())

    past = None
    if after_id is not None and key is not None:
        pair, bound = sa.tuple_(column, c.id), sa.tuple_(sa.literal(key, column.type), after_id)
        past = pair < bound if desc else pair > bound
    if query.sort_by != "due_date":
        return page([], column, past, n)
    rows: list[Any] = []
    if after_id is None or key is not None:
        rows = page([column.is_not(None)], column, past, n)
    if len(rows) < n:
        undated_past = None
        if after_id is not None and key is None:
            undated_past = c.id < after_id if desc else c.id > after_id
        rows += page([column.is_(None)], c.id, undated_past, n - len(rows))
    return rows


@for_owner
def list_tasks(
    session: Session,
    user_id: str,
    *,
    with_count: bool = False,
    **arguments: Any,
) -> TaskPage:
    """A page of user_id's tasks matching the filters, in the order asked for.

    Arguments (each optional; None means not given; see ListQuery): status ("all",
    "pending", "completed"), priority, tags (any of; a list, as a repeated query
    parameter gives it), search (case-insensitive substring of title or description),
    due_before (exclusive), due_after (inclusive), sort_by ("created_at", "due_date",
    "priority", "title"), sort_order ("asc", "desc"), limit (1..1000, default 100), cursor
    (the previous page's next_cursor). Ties are broken by id; tasks without a due date
    come last when sorting by due date. v1.0's complete=True/False still works.
    with_count=True also counts every matching task (page.count; None when not asked):
    an index scan over all of them, so ask for it once, with the first page.
    Raises InvalidArgument (HTTP 422) for a bad owner id or argument, before any SQL.
    """
    user_id = owner(user_id)
    complete = arguments.pop("complete", None)  # v1.0's filter: the same as status
    if complete is not None:
        if not isinstance(complete, bool):
            raise InvalidArgument.of("complete", "must be true, false or None")
        if arguments.get("status") is None:
            arguments["status"] = "completed" if complete else "pending"
    try:
        query = ListQuery.model_validate(arguments)
    except ValidationError as exc:
        raise invalid(exc) from None
    secret, context = _secret(session), _context(user_id, query)
    after: tuple[Any, int | None] = (None, None)
    if query.cursor is not None:
        try:
            after = unseal(secret, context, query.cursor)
        except BadCursor:
            raise InvalidArgument.of("cursor", BAD_CURSOR) from None
    key, after_id = after
    filters = _filters(query)
    count = None
    if _needs_definer(query, after_id):
        found = (
            session.execute(
                _PAGE_AND_COUNT if with_count else _PAGE,
                {
                    "user_id": user_id,
                    "sort_by": query.sort_by,
                    "descending": query.sort_order == "desc",
                    "page_size": query.limit + 1,
                    "after_id": after_id,
                    "after_time": key if query.sort_by in ("created_at", "due_date") else None,
                    "after_priority": key.value if isinstance(key, Priority) else None,
                    "after_title": key if query.sort_by == "title" else None,
                    **filters,
                },
            )
            .mappings()
            .all()
        )
        count = found[0]["total"] if with_count else None
        rows = [row for row in found if row["id"] is not None]  # with the count: none if empty
    else:
        rows = _direct(session, user_id, query, after, query.limit + 1)
        if with_count:
            count = session.execute(_COUNT_ONLY, filters).scalar_one()
    has_next = len(rows) > query.limit
    rows = rows[: query.limit]
    next_cursor = None
    if has_next:
        last = rows[-1]
        next_cursor = seal(secret, context, last[query.sort_by], last["id"])
    return TaskPage(
        tasks=[TaskRead.model_validate(dict(r)) for r in rows],
        count=count,
        has_next=has_next,
        next_cursor=next_cursor,
    )


def iter_tasks(session: Session, user_id: str, **arguments: Any) -> Iterator[TaskRead]:
    """Every task of user_id matching the filters (list_tasks' arguments, without cursor),
    in the order asked for, read page by page (1,000 a page unless limit says otherwise):
    the client's "all of the user's tasks", whatever their number."""
    if arguments.get("cursor") is not None:
        raise InvalidArgument.of("cursor", "iter_tasks reads from the first page: leave it out")
    if arguments.get("limit") is None:
        arguments["limit"] = MAX_PAGE
    while True:
        page = list_tasks(session, user_id, **arguments)
        yield from page.tasks
        if page.next_cursor is None:
            return
        arguments["cursor"] = page.next_cursor
