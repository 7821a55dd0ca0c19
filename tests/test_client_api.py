"""The reference app (tests/client_app.py) over HTTP, as the app role: every status code of
CLIENT.md, races, hostile input; the handlers that models.api installs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from models import Conflict, DatabaseError, api
from models.db import get_engine
from models.security import APP_ROLE
from tests.client_app import app, token
from tests.support import PgServer, run_alembic, run_python


@pytest.fixture(scope="module")
def client(pg_server: PgServer, head_template: str) -> Iterator[TestClient]:
    """The app exactly as deployed: DATABASE_URL names a database at head as the app role,
    and the real get_engine / user_session serve the routes (row-level security on)."""
    with (
        pg_server.database("client", template=head_template) as name,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setenv("DATABASE_URL", replace(pg_server, user=APP_ROLE, password=None).dsn(name))
        patch.setattr("models.db._engine", None)  # built afresh from DATABASE_URL
        try:
            with TestClient(app) as c:
                yield c
        finally:
            get_engine().dispose()


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user)}"}


def test_every_status_code_of_the_client(client: TestClient) -> None:
    """200, 201, 204, 400, 401, 403, 404 and 422 exactly where CLIENT.md puts them."""
    me, url = auth("ann"), "/api/ann/tasks"
    created = client.post(url, json={"title": "Buy milk", "priority": "high"}, headers=me)
    assert created.status_code == 201
    task = created.json()
    assert task["priority"] == "high" and task["tags"] == [] and task["created_at"].endswith("Z")
    one = f"{url}/{task['id']}"
    listed = client.get(url, headers=me)
    assert listed.status_code == 200 and listed.json()["count"] == 1
    assert [t["id"] for t in listed.json()["tasks"]] == [task["id"]]
    assert client.get(one, headers=me).json()["title"] == "Buy milk"
    put = client.put(one, json={"title": "Milk", "complete": True, "priority": "low"}, headers=me)
    assert put.status_code == 200 and put.json()["description"] is None
    assert client.put(one, json={"title": "Milk"}, headers=me).status_code == 422
    patch = client.patch(one, json={"tags": ["shop"]}, headers=me)
    assert patch.status_code == 200 and patch.json()["tags"] == ["shop"]
    for empty in ({}, {"colour": "red"}):
        bad = client.patch(one, json=empty, headers=me)
        assert bad.status_code == 400 and bad.json()["detail"] == "No fields to update"
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get(url, headers=auth("bob")).status_code == 403
    bob = client.post("/api/bob/tasks", json={"title": "bob's"}, headers=auth("bob")).json()
    for method in ("get", "patch", "put", "delete"):
        body = {"title": "x", "complete": False, "priority": "low"}
        kwargs: dict[str, Any] = {"json": body} if method in ("patch", "put") else {}
        missing = client.request(method, f"{url}/{bob['id']}", headers=me, **kwargs)
        assert missing.status_code == 404 and missing.json()["detail"] == "Task not found"
    invalid = client.post(url, json={"title": "  "}, headers=me)
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"][-1] == "title"
    assert client.delete(one, headers=me).status_code == 204
    assert client.delete(one, headers=me).status_code == 404


def test_rules_the_database_checks_come_back_as_422(client: TestClient) -> None:
    """A PATCH breaking a rule that only the stored row shows (no due date) is a 422."""
    me, url = auth("cy"), "/api/cy/tasks"
    task = client.post(url, json={"title": "t"}, headers=me).json()
    bad = client.patch(f"{url}/{task['id']}", json={"recurring": "daily"}, headers=me)
    assert bad.status_code == 422
    assert bad.json()["detail"] == [
        {
            "loc": ["recurring"],
            "msg": "recurring other than 'none' needs a due_date",
            "type": "value_error",
        }
    ]


@pytest.mark.parametrize("user", ["u" * 256, " ", "a%00b", "%E2%80%83"])
def test_hostile_owner_ids_are_422(client: TestClient, user: str) -> None:
    """An owner id the table refuses (too long, blank, NUL) is a 422 on every route, never a 500."""
    from urllib.parse import unquote

    me, url = auth(unquote(user)), f"/api/{user}/tasks"
    for method, path, body in [
        ("get", url, None),
        ("post", url, {"title": "t"}),
        ("get", f"{url}/1", None),
        ("patch", f"{url}/1", {"title": "t"}),
        ("put", f"{url}/1", {"title": "t", "complete": False, "priority": "low"}),
        ("delete", f"{url}/1", None),
    ]:
        answer = client.request(method, path, headers=me, json=body)
        assert answer.status_code == 422, (method, path, answer.text)
        assert answer.json()["detail"][0]["loc"][0] == "user_id"


@pytest.mark.parametrize(
    "query",
    [
        "cursor=%00",
        "cursor=eyJ4Ijp7fX0",
        "cursor=%ED%A0%80",
        "limit=0",
        "limit=100000",
        "limit=abc",
        "sort_by=id",
        "search=%00",
        "tags=%00",
    ],
)
def test_hostile_list_queries_are_422(client: TestClient, query: str) -> None:
    """Forged cursors and out-of-range list arguments are 422 with FastAPI's detail shape."""
    answer = client.get(f"/api/dee/tasks?{query}", headers=auth("dee"))
    assert answer.status_code == 422
    assert {"loc", "msg", "type"} <= set(answer.json()["detail"][0])


def test_list_pages_with_cursor_over_http(client: TestClient) -> None:
    """The list's next_cursor, sent back as a query parameter, gives the next page."""
    me, url = auth("eve"), "/api/eve/tasks"
    ids = [client.post(url, json={"title": f"t{i}"}, headers=me).json()["id"] for i in range(5)]
    first = client.get(f"{url}?limit=3&sort_by=title&sort_order=asc", headers=me).json()
    rest = client.get(
        f"{url}?limit=3&sort_by=title&sort_order=asc&cursor={first['next_cursor']}", headers=me
    ).json()
    assert [t["id"] for t in first["tasks"] + rest["tasks"]] == ids
    assert first["count"] == 5 and rest["count"] is None and rest["has_next"] is False


def test_list_query_parameters_as_the_frontend_sends_them(client: TestClient) -> None:
    """No parameter: every task newest first with its count (past the 1,000 of a page, by
    iter_tasks); filters combine, tags repeat; a page when limit is given."""
    me, url = auth("gus"), "/api/gus/tasks"
    for i in range(4):
        body = {"title": f"t{i}", "tags": ["a"] if i % 2 else ["b"], "priority": "high"}
        client.post(url, json=body, headers=me)
    everything = client.get(url, headers=me).json()
    assert everything["count"] == 4 and [t["title"] for t in everything["tasks"]] == [
        "t3",
        "t2",
        "t1",
        "t0",
    ]
    both = client.get(f"{url}?tags=a&tags=b&priority=high&sort_by=title&sort_order=asc", headers=me)
    assert [t["title"] for t in both.json()["tasks"]] == ["t0", "t1", "t2", "t3"]
    only_a = client.get(f"{url}?tags=a&status=pending&search=T", headers=me).json()
    assert only_a["count"] == 2 and {t["title"] for t in only_a["tasks"]} == {"t1", "t3"}
    page = client.get(f"{url}?limit=3", headers=me).json()
    assert page["count"] == 4 and len(page["tasks"]) == 3 and page["has_next"]


@pytest.mark.parametrize(
    "body",
    [
        '{"title": NaN}',
        '{"title": "ok", "priority": NaN}',
        '{"title": "\\ud800"}',
        '{"title": "ok", "priority": "\\udfff"}',
        '{"title": "ok", "tags": ["\\ud800"]}',
        '{"title": ["\\ud800", Infinity]}',
        '{"title": "ok", "due_date": "\\ud800"}',
    ],
)
def test_hostile_bodies_are_422_that_echo_nothing(client: TestClient, body: str) -> None:
    """NaN, Infinity and lone surrogates in a body: 422 in FastAPI's detail shape, never a
    500, and the answer never carries the input."""
    answer = client.post(
        "/api/hal/tasks", content=body, headers={**auth("hal"), "content-type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail and all(set(e) == {"loc", "msg", "type"} for e in detail)
    assert "NaN" not in answer.text and "Infinity" not in answer.text


def test_a_database_error_is_a_503_of_one_line_and_a_conflict_a_412(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """models.api's handlers: DatabaseError is a 503 with Retry-After and a fixed line (the
    error's own line, where the database is, goes to the log only); Conflict a 412."""
    tiny = FastAPI()
    api.install(tiny)

    @tiny.get("/down")
    def down() -> None:
        raise DatabaseError("cannot reach PostgreSQL at postgresql://***@db.internal/todo")

    @tiny.get("/stale")
    def stale() -> None:
        raise Conflict("task 7 changed since 2026-01-01T00:00:00+00:00: read it again")

    with TestClient(tiny) as c:
        answer, conflict = c.get("/down"), c.get("/stale")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.json() == {"detail": api.UNAVAILABLE}
    assert "db.internal" in caplog.text and "db.internal" not in answer.text
    assert conflict.status_code == 412 and "read it again" in conflict.json()["detail"]


def test_patch_racing_delete_is_200_or_404(client: TestClient) -> None:
    """60 PATCH/DELETE pairs on the same task, in parallel: each answer is 200/204 or 404."""
    me, url = auth("fay"), "/api/fay/tasks"
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def call(method: str, path: str) -> None:
        barrier.wait()
        kwargs: dict[str, Any] = {"json": {"complete": True}} if method == "patch" else {}
        statuses.append(client.request(method, path, headers=me, **kwargs).status_code)

    with ThreadPoolExecutor(2) as pool:
        for _ in range(60):
            path = f"{url}/{client.post(url, json={'title': 't'}, headers=me).json()['id']}"
            list(pool.map(call, ["patch", "delete"], [path, path]))
    assert set(statuses) <= {200, 204, 404} and statuses.count(204) == 60


FIRST_REQUESTS = """
import json, sys, threading
from concurrent.futures import ThreadPoolExecutor
import models.db, models.local
from fastapi.testclient import TestClient
from tests.client_app import app, token

built, started = [], []
make_engine, start_server = models.db.make_engine, models.local.start_server
models.db.make_engine = lambda *a, **k: built.append(1) or make_engine(*a, **k)
models.local.start_server = lambda *a, **k: started.append(1) or start_server(*a, **k)
client = TestClient(app)
barrier = threading.Barrier(20)

def first(n):
    barrier.wait()
    user = f"user{n}"
    answer = client.post(f"/api/{user}/tasks", json={"title": "t"},
                         headers={"Authorization": "Bearer " + token(user)})
    return answer.status_code

with ThreadPoolExecutor(20) as pool:
    codes = list(pool.map(first, range(20)))
print(json.dumps({"codes": codes, "engines": len(built), "starts": len(started)}))
"""


def test_twenty_first_requests_of_a_fresh_process(memory_path: Path) -> None:
    """A fresh process (embedded server, real get_session): 20 parallel first requests all 201,
    one engine built, the server started once."""
    env = {"LOCAL_PGDATA": str(memory_path / "pgdata")}
    migrated = run_alembic("upgrade", "head", env=env, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    result = run_python("-c", FIRST_REQUESTS, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"codes": [201] * 20, "engines": 1, "starts": 1}


@pytest.mark.parametrize("user", ["", " ", "a\x00b", "u" * 256, 7])
def test_the_session_dependency_refuses_a_bad_user_id(user: Any) -> None:
    """get_user_session (behind api.user_session) raises InvalidArgument on user_id, never a
    bare ValueError, before it takes a connection."""
    from models import InvalidArgument, get_user_session

    with pytest.raises(InvalidArgument) as refused:
        next(get_user_session(user))
    assert refused.value.errors()[0]["loc"][0] == "user_id"
