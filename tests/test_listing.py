"""The list v1.1: every sort and filter, keyset pages that neither skip nor repeat, a count."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session

from models import InvalidArgument, Priority, TaskCreate, create_task, list_tasks

BASE = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def tasks(session: Session) -> list[Any]:
    """23 tasks of 'lister' with tied sort keys, some without due date; one of 'other'."""
    made = []
    for i in range(23):
        data = TaskCreate(
            title=f"{'Milk' if i % 4 == 0 else 'task'} {i % 5}",
            description="buy 50% off" if i % 6 == 0 else None,
            priority=list(Priority)[i % 3],
            due_date=None if i % 4 == 1 else BASE + timedelta(days=i % 3),
            tags=["home"] if i % 2 else ["work", "Urgent"],
        )
        made.append(create_task(session, "lister", data))
    create_task(session, "other", TaskCreate(title="Milk other", tags=["home"]))
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
    """Pages of 4 chained by cursor give every (matching) task once, in the contract's order."""
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
        )
        assert page.count == len(tasks)
        seen += [t.id for t in page.tasks]
        if not page.has_next:
            assert page.next_cursor is None
            break
        cursor = page.next_cursor
    assert seen == expected(tasks, sort_by, order)


def test_filters_combine(session: Session, tasks: list[Any]) -> None:
    """status, priority, tags (any of), search and due range each narrow the list, and combine."""

    def ids(**filters: Any) -> set[int]:
        page = list_tasks(session, "lister", limit=1000, **filters)
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


def _cursor(*payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(payload)).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !",
        "",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        _cursor("created_at", "desc", "yesterday", 1),
        _cursor("created_at", "desc", "2026-01-01T00:00:00", 1),
        _cursor("created_at", "desc", None, 1),
        _cursor("title", "asc", "a", 1),
        _cursor("created_at", "desc", "2026-01-01T00:00:00+00:00", 2**63),
        _cursor("created_at", "desc", "2026-01-01T00:00:00+00:00", "1; DROP TABLE tasks"),
        _cursor("created_at", "desc"),
        "x" * 601,
    ],
)
def test_hostile_cursors_are_invalid_arguments(session: Session, cursor: str) -> None:
    """A malformed, forged or foreign-sort cursor raises InvalidArgument on 'cursor'."""
    with pytest.raises(InvalidArgument) as exc:
        list_tasks(session, "lister", cursor=cursor)
    assert exc.value.errors()[0]["loc"] == ["cursor"]
    assert exc.value.status_code == 422


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"sort_by": "id"}, "sort_by"),
        ({"sort_order": "up"}, "sort_order"),
        ({"status": "done"}, "status"),
        ({"search": "a\x00"}, "search"),
        ({"tags": ["x" * 51]}, "tags"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_list_arguments_are_invalid_arguments(
    session: Session, arguments: dict[str, Any], field: str
) -> None:
    """Out-of-range or unknown list arguments raise InvalidArgument naming the argument."""
    with pytest.raises(InvalidArgument) as exc:
        list_tasks(session, "lister", **arguments)
    assert exc.value.errors()[0]["loc"][0] == field


def test_another_users_rows_never_show(session: Session, tasks: list[Any]) -> None:
    """The other user's matching task is neither listed nor counted, whatever the filter."""
    page = list_tasks(session, "lister", search="milk", tags=["home"], limit=1000)
    assert all(t.user_id == "lister" for t in page.tasks)
    assert list_tasks(session, "other", search="milk").count == 1
