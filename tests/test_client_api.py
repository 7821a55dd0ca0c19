"""The client's own routes (CLIENT.md) on FastAPI over HTTP: every status, races, hostile input."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine
from sqlmodel import Session

from models import get_session
from models.security import APP_ROLE
from tests.client_app import app, token
from tests.support import PgServer, migrate, run_alembic, run_python


@pytest.fixture(scope="module")
def db_engine(pg_server: PgServer) -> Iterator[Engine]:
    """A migrated database whose commits are real (races need two sessions), used as the
    app role: the routes run under row-level security, as in production."""
    with pg_server.database("client") as name:
        migrate(pg_server.url(name))
        app_role = dataclasses.replace(pg_server, user=APP_ROLE, password=None)
        engine = create_engine(app_role.url(name), pool_size=10, max_overflow=20)
        yield engine
        engine.dispose()


@pytest.fixture(scope="module")
def client(db_engine: Engine) -> Iterator[TestClient]:
    """The app with get_session bound to the test database (the real one runs in a subprocess)."""

    def session() -> Iterator[Session]:
        with Session(db_engine) as s:
            yield s

    app.dependency_overrides[get_session] = session
    with TestClient(app) as c:
        yield c
    app.dependency_overrides.clear()


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
    ["cursor=%00", "cursor=eyJ4Ijp7fX0", "limit=0", "limit=100000", "sort_by=id", "search=%00"],
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
    assert first["count"] == rest["count"] == 5 and rest["has_next"] is False


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
