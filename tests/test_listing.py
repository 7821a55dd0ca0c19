"""The list v1.1 as the app role, through the policies: every sort and filter, keyset pages
that neither skip nor repeat, opaque cursors, the count when asked, and no other user's row."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, create_engine, pool, text
from sqlmodel import Session

from models import (
    InvalidArgument,
    Priority,
    Task,
    TaskCreate,
    TaskUpdate,
    create_task,
    delete_task,
    list_tasks,
    update_task,
)
from models.crud import TASKS
from models.listing import iter_tasks
from models.security import APP_ROLE, acting_as, bind_user
from tests import pgbouncer as pgb
from tests.support import PgServer

BASE = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def app_engine(engine: Engine) -> Iterator[Engine]:
    """The session's database at head, connected as the app role (row-level security on)."""
    app = create_engine(engine.url.set(username=APP_ROLE, password=None))
    yield app
    app.dispose()


@pytest.fixture
def session(app_engine: Engine) -> Iterator[Session]:
    """A Session as the app role whose commits become savepoints, rolled back at the end."""
    with app_engine.connect() as conn:
        transaction = conn.begin()
        with Session(bind=conn, join_transaction_mode="create_savepoint") as sess:
            yield sess
        transaction.rollback()


def make_tasks(session: Session, user: str) -> list[Any]:
    """23 tasks of user with tied sort keys, some without due date (one INSERT)."""
    rows = [
        TaskCreate(
            title=f"{'Milk' if i % 4 == 0 else 'task'} {i % 5}",
            description="buy 50% off" if i % 6 == 0 else None,
            priority=list(Priority)[i % 3],
            due_date=None if i % 4 == 1 else BASE + timedelta(days=i % 3),
            tags=["home"] if i % 2 else ["work", "Urgent"],
        ).model_dump()
        for i in range(23)
    ]
    insert = sa.insert(TASKS).values([{**row, "user_id": user} for row in rows])
    with acting_as(session, user):
        made = session.execute(insert.returning(*TASKS.c)).mappings().all()
    return [Task.model_validate(dict(row)) for row in made]


@pytest.fixture
def tasks(session: Session) -> list[Any]:
    """23 tasks of 'lister'; the same 23 again for 'other' (a leak would show as duplicates)."""
    made = make_tasks(session, "lister")
    make_tasks(session, "other")
    return made


def expected(tasks: list[Any], sort_by: str, order: str) -> list[int]:
    """The order the contract asks for, computed in Python: ties by id, no due date last."""
    rank = {"low": 0, "medium": 1, "high": 2}

    def key(t: Any) -> Any:
        value = getattr(t, sort_by)
        return rank[value] if sort_by == "priority" else value

    dated = [t for t in tasks if key(t) is not None]
    undated = [t for t in tasks if key(t) is None]
    desc = order == "desc"
    dated.sort(key=lambda t: (key(t), t.id), reverse=desc)
    undated.sort(key=lambda t: t.id, reverse=desc)
    return [t.id for t in dated + undated]


@pytest.mark.parametrize("search", [None, "MiL"])
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("sort_by", ["created_at", "due_date", "priority", "title"])
def test_keyset_pages_follow_every_sort(
    session: Session, tasks: list[Any], sort_by: str, order: str, search: str | None
) -> None:
    """Pages of 4 chained by cursor give every (matching) task once, in the contract's order;
    the count comes with the page that asks for it (the first), None on the others."""
    if search is not None:
        tasks = [t for t in tasks if search.lower() in f"{t.title} {t.description}".lower()]
    seen: list[int] = []
    cursor = None
    while True:
        page = list_tasks(
            session,
            "lister",
            sort_by=sort_by,
            sort_order=order,
            limit=4,
            cursor=cursor,
            search=search,
            with_count=cursor is None,
        )
        assert page.count == (len(tasks) if cursor is None else None)
        seen += [t.id for t in page.tasks]
        if not page.has_next:
            assert page.next_cursor is None
            break
        cursor = page.next_cursor
    assert seen == expected(tasks, sort_by, order)


def test_the_definer_path_gives_the_same_pages(
    session: Session, tasks: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lists read through the policies directly give, page for page, what
    tasks_page_ids gives for them: every sort, order, and the filters the direct read serves."""
    from models import listing

    direct_reads: list[int] = []
    real = listing._direct

    def counted(*args: Any) -> list[Any]:
        direct_reads.append(1)
        return real(*args)

    monkeypatch.setattr(listing, "_direct", counted)

    def walk(**arguments: Any) -> list[list[int]]:
        pages, cursor = [], None
        while True:
            page = list_tasks(session, "lister", limit=5, cursor=cursor, **arguments)
            pages.append([t.id for t in page.tasks])
            if (cursor := page.next_cursor) is None:
                return pages

    for sort_by in ("created_at", "due_date", "priority", "title"):
        for order in ("asc", "desc"):
            for filters in ({}, {"status": "pending", "due_after": BASE + timedelta(days=1)}):
                arguments = {"sort_by": sort_by, "sort_order": order, **filters}
                with monkeypatch.context() as patch:
                    patch.setattr(listing, "_needs_definer", lambda *_: True)
                    via_definer = walk(**arguments)
                assert walk(**arguments) == via_definer, arguments
    assert len(direct_reads) >= 8 * 2 * 2  # the direct read served every first page


def test_filters_combine(session: Session, tasks: list[Any]) -> None:
    """status, priority, tags (any of), search and due range each narrow the list, and combine."""

    def ids(**filters: Any) -> set[int]:
        page = list_tasks(session, "lister", limit=1000, with_count=True, **filters)
        assert page.count == len(page.tasks)
        return {t.id for t in page.tasks}

    everything = ids()
    assert len(everything) == 23
    assert ids(priority="high") == {t.id for t in tasks if t.priority == "high"}
    assert ids(tags=["home", "nope"]) == {t.id for t in tasks if "home" in t.tags}
    assert ids(tags=["urgent"]) == set()  # tags match exactly
    milk = {t.id for t in tasks if "Milk" in t.title}
    assert ids(search="mILK") == milk
    assert ids(search="50%") == {t.id for t in tasks if t.description}
    assert ids(search="%") == {t.id for t in tasks if t.description}  # % is literal
    assert ids(search="_") == set()
    due = BASE + timedelta(days=1)
    assert ids(due_after=due) == {t.id for t in tasks if t.due_date and t.due_date >= due}
    assert ids(due_before=due) == {t.id for t in tasks if t.due_date and t.due_date < due}
    assert ids(status="pending") == everything and ids(status="completed") == set()
    assert ids(search="milk", tags=["work"], priority="low") == {
        t.id for t in tasks if t.id in milk and "work" in t.tags and t.priority == "low"
    }


def test_query_parameters_as_a_framework_hands_them_over(
    session: Session, tasks: list[Any]
) -> None:
    """None is "not given" for every argument; tags come as a list (a repeated parameter) or
    one string; the count is not asked unless with_count=True."""
    given: dict[str, Any] = {
        "status": None,
        "priority": None,
        "tags": None,
        "search": None,
        "cursor": None,
    }
    page = list_tasks(session, "lister", sort_by=None, sort_order=None, limit=None, **given)
    assert len(page.tasks) == 23 and page.count is None
    assert [t.id for t in page.tasks] == expected(tasks, "created_at", "desc")
    home = {t.id for t in tasks if "home" in t.tags}
    assert {t.id for t in list_tasks(session, "lister", tags="home").tasks} == home
    assert {t.id for t in list_tasks(session, "lister", tags=["home"]).tasks} == home


def test_iter_tasks_reads_every_task_page_by_page(session: Session, tasks: list[Any]) -> None:
    """iter_tasks yields every matching task once, in order, over as many pages as it takes."""
    walked = [t.id for t in iter_tasks(session, "lister", sort_by="title", limit=4)]
    assert walked == expected(tasks, "title", "desc")
    assert [t.id for t in iter_tasks(session, "lister", status="completed")] == []
    with pytest.raises(InvalidArgument, match="cursor"):
        next(iter_tasks(session, "lister", cursor="x"))


def test_a_row_edited_or_deleted_between_pages_keeps_the_position(
    session: Session, tasks: list[Any]
) -> None:
    """The cursor holds the last row's sort key: after that row's priority changes, or it is
    deleted, the next page goes on where the first ended (nothing skipped, nothing repeated)."""
    for change in ("edit", "delete"):
        first = list_tasks(session, "lister", sort_by="priority", sort_order="desc", limit=5)
        last = first.tasks[-1]
        if change == "edit":
            update_task(session, "lister", last.id, TaskUpdate(priority=Priority.LOW))
        else:
            assert delete_task(session, "lister", last.id)
        rest = [t.id for t in iter_tasks(session, "lister", sort_by="priority", limit=1000)]
        second = list_tasks(
            session, "lister", sort_by="priority", limit=5, cursor=first.next_cursor
        )
        after = [t for t in rest if t not in {t.id for t in first.tasks}]
        assert [t.id for t in second.tasks] == after[:5]


def cursor_of(session: Session, user: str = "lister", **arguments: Any) -> str:
    """The next_cursor of the first page of 2 of user's list with these arguments."""
    cursor = list_tasks(session, user, limit=2, **arguments).next_cursor
    assert cursor is not None
    return cursor


def test_cursors_are_opaque(session: Session, tasks: list[Any]) -> None:
    """A title-sorted page's cursor shows neither the title nor the id, and is the same for
    the same position (no nonce): decoding it gives bytes only."""
    cursor = cursor_of(session, sort_by="title")
    assert cursor == cursor_of(session, sort_by="title")
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    assert b"task" not in raw.lower() and b"milk" not in raw.lower()
    last = list_tasks(session, "lister", sort_by="title", limit=2).tasks[-1]
    assert str(last.id).encode() not in raw and last.title.encode() not in raw


def _json_cursor(*payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(payload)).encode()).decode()


JUNK = [
    "not base64 !",
    "",
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    _json_cursor("title", "desc", "divorce lawyer call", 792),  # v1.1's readable cursor
    _json_cursor("created_at", "desc", "2026-01-01T00:00:00+00:00", 1),
    "\ud800",  # a lone surrogate (UnicodeEncodeError before)
    "A" * 22 + "\udfff",
    "x" * 1200,
    "A" * 1100,
]


@pytest.mark.parametrize("cursor", JUNK, ids=range(len(JUNK)))
def test_junk_cursors_are_invalid_arguments(session: Session, cursor: str) -> None:
    """A malformed cursor, v1.1's readable one, a lone surrogate or an overlong one: 422."""
    with pytest.raises(InvalidArgument) as exc:
        list_tasks(session, "lister", cursor=cursor)
    assert exc.value.errors()[0]["loc"] == ["cursor"]
    assert exc.value.status_code == 422


def test_forged_and_foreign_cursors_are_invalid_arguments(
    session: Session, tasks: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cursor with one bit changed, cut short, of another user, of another list (filters,
    sort or order) or sealed with another secret is refused as 'cursor', never followed."""
    good = cursor_of(session, sort_by="title", tags=["home"])
    flipped = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    cases: list[tuple[str, dict[str, Any]]] = [
        (flipped, {}),
        (good[:-4], {}),
        (good, {"user": "other"}),
        (good, {"tags": ["work"]}),
        (good, {"tags": ["home"], "search": "milk"}),
        (good, {"tags": ["home"], "sort_by": "created_at"}),
        (good, {"tags": ["home"], "sort_order": "asc"}),
        (cursor_of(session, "other", sort_by="title", tags=["home"]), {}),
    ]
    for cursor, change in cases:
        arguments = {"sort_by": "title", "tags": ["home"], **change}
        user = arguments.pop("user", "lister")
        with pytest.raises(InvalidArgument) as exc:
            list_tasks(session, user, cursor=cursor, **arguments)
        assert exc.value.errors()[0]["loc"] == ["cursor"], (cursor, change)
    # The page size is not part of the list: a cursor works with another limit.
    assert list_tasks(session, "lister", sort_by="title", tags=["home"], cursor=good, limit=7)
    monkeypatch.setenv("CURSOR_SECRET", "another-secret")
    from models import listing

    listing._configured_secret.cache_clear()
    try:
        with pytest.raises(InvalidArgument, match="cursor"):
            list_tasks(session, "lister", sort_by="title", tags=["home"], cursor=good)
        resealed = cursor_of(session, sort_by="title", tags=["home"])
        assert resealed != good
        assert list_tasks(session, "lister", sort_by="title", tags=["home"], cursor=resealed)
    finally:
        listing._configured_secret.cache_clear()


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"sort_by": "id"}, "sort_by"),
        ({"sort_order": "up"}, "sort_order"),
        ({"status": "done"}, "status"),
        ({"search": "a\x00"}, "search"),
        ({"search": "\ud800x"}, "search"),
        ({"tags": ["\udcff"]}, "tags"),
        ({"tags": ["x" * 51]}, "tags"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_list_arguments_are_invalid_arguments(
    session: Session, arguments: dict[str, Any], field: str
) -> None:
    """Out-of-range, unknown or unencodable list arguments raise InvalidArgument naming the
    argument, before any SQL."""
    with pytest.raises(InvalidArgument) as exc:
        list_tasks(session, "lister", **arguments)
    assert exc.value.errors()[0]["loc"][0] == field


def test_another_users_rows_never_show(session: Session, tasks: list[Any]) -> None:
    """'other' has the same 23 tasks: whatever the filter or sort, none of them is listed or
    counted for 'lister', and none of lister's for 'other'."""
    for user in ("lister", "other"):
        for arguments in (
            {"search": "milk", "tags": ["work", "x"]},
            {"search": "mi", "sort_by": "due_date"},
            {"tags": ["work"], "sort_by": "priority", "sort_order": "asc"},
            {"sort_by": "title"},
        ):
            walked = list(iter_tasks(session, user, limit=3, **arguments))
            assert walked and {t.user_id for t in walked} == {user}
            page = list_tasks(session, user, with_count=True, **arguments)
            assert page.count == len(walked)


def test_the_definer_functions_return_only_the_bound_users_ids(
    session: Session, tasks: list[Any]
) -> None:
    """Called by hand as the app role, tasks_page_ids and tasks_count see only the bound
    user's tasks (all of them without a filter), whatever the sort; with no user, nothing."""
    mine = {t.id for t in tasks}
    every, some = "NULL, NULL, NULL, NULL, NULL, NULL", "NULL, NULL, '{home,work}', 'i', NULL, NULL"
    for sort_by in ("created_at", "due_date", "priority", "title"):
        for filters in (every, some):
            for user in ("lister", ""):
                session.execute(text("SELECT set_config('app.user_id', :u, true)"), {"u": user})
                page = f"SELECT tasks_page_ids(:s, true, 1001, NULL, NULL, NULL, NULL, {filters})"
                ids = set(session.execute(text(page), {"s": sort_by}).scalars())
                total = session.execute(text(f"SELECT tasks_count({filters})")).scalar_one()
                assert ids <= (mine if user else set()) and total == len(ids)
                assert ids == mine or not user or filters == some


def test_interleaved_users_through_pgbouncer_see_only_their_own(
    pg_server: PgServer, head_template: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """8 users with the same tasks, each listing by search, tags and every sort and following
    (and forging: another user's) cursors, through a real PgBouncer in transaction mode
    logged in as the app role on 2 server connections: no row of another user, ever."""
    if pgb.binary() is None:
        pytest.skip(pgb.MISSING)
    app_role = replace(pg_server, user=APP_ROLE, password=None)
    users = [f"pgb-{n}" for n in range(8)]
    with (
        pg_server.database("listpgb", template=head_template) as name,
        pgb.running_pgbouncer(
            app_role, tmp_path_factory.mktemp("pgb-list"), default_pool_size="2"
        ) as bouncer,
    ):
        engine = create_engine(bouncer.url(name), poolclass=pool.NullPool)
        for user in users:
            with Session(engine) as session:
                for i in range(6):
                    tags = ["home"] if i % 2 else ["work"]
                    create_task(session, user, TaskCreate(title=f"milk {i}", tags=tags))
        cursors: dict[str, str] = {}
        lock = threading.Lock()
        foreign: list[str] = []

        def walk(user: str) -> None:
            for sort_by in ("created_at", "due_date", "priority", "title"):
                arguments: dict[str, Any] = {
                    "search": "milk",
                    "tags": ["home", "work"],
                    "sort_by": sort_by,
                }
                with Session(engine) as session:
                    bind_user(session, user)
                    page = list_tasks(session, user, limit=2, with_count=True, **arguments)
                    seen = [t.user_id for t in page.tasks]
                    assert page.count == 6 and page.next_cursor is not None
                    with lock:
                        other = cursors.get(sort_by)
                        cursors[sort_by] = page.next_cursor
                    if other is not None:  # another user's cursor: refused
                        with pytest.raises(InvalidArgument, match="cursor"):
                            list_tasks(session, user, cursor=other, limit=2, **arguments)
                    seen += [t.user_id for t in iter_tasks(session, user, limit=2, **arguments)]
                with lock:
                    foreign.extend(owner for owner in seen if owner != user)

        with ThreadPoolExecutor(len(users)) as executor:
            list(executor.map(walk, users * 2))
        engine.dispose()
    assert foreign == []
