"""The reference app: CLIENT.md's routes on FastAPI, wired to the data layer as an app should
be (docs/data-access.md copies it). Test code, not the product.

The app's own code is its routes and its auth: an HS256 JWT whose `user_id` (or `sub`)
claim must equal the path's user_id (401 without a valid token, 403 for another user's
path). Everything else comes from the data layer, with no adapter in between:
`api.install(app)` (422 for bad input, 400 for an empty PATCH, 503 when the database is
away), `api.user_session(current_user)` (a session whose every transaction runs for the
authenticated user, as the app role, through row-level security), and data-access
functions that take what FastAPI hands over (None for a query parameter left out).
"""

from __future__ import annotations

from typing import Annotated

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Response
from sqlmodel import Session

from models import (
    Task,
    TaskCreate,
    TaskPage,
    TaskRead,
    TaskReplace,
    TaskUpdate,
    api,
    create_task,
    delete_task,
    get_task,
    iter_tasks,
    list_tasks,
    replace_task,
    update_task,
)

SECRET = "test-only-secret-of-at-least-32-bytes!"
NOT_FOUND = "Task not found"
app = FastAPI()
api.install(app)


def token(user_id: str) -> str:
    """A token the frontend's auth would sign for user_id."""
    return jwt.encode({"user_id": user_id}, SECRET, algorithm="HS256")


def current_user(user_id: str, authorization: Annotated[str | None, Header()] = None) -> str:
    """The path's user_id, once the token proves the request is that user's: else 401/403."""
    scheme, _, raw = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not raw:
        raise HTTPException(401, "Not authenticated")
    try:
        claims = jwt.decode(raw, SECRET, algorithms=["HS256"])
    except jwt.PyJWTError:
        raise HTTPException(401, "Invalid token") from None
    if (claims.get("user_id") or claims.get("sub")) != user_id:
        raise HTTPException(403, "Forbidden")
    return user_id


User = Annotated[str, Depends(current_user)]
UserSession = Annotated[Session, Depends(api.user_session(current_user))]


def found(task: Task | None) -> Task:
    if task is None:
        raise HTTPException(404, NOT_FOUND)
    return task


@app.get("/api/{user_id}/tasks")
def list_route(
    user_id: User,
    session: UserSession,
    status: str | None = None,
    priority: str | None = None,
    tags: Annotated[list[str] | None, Query()] = None,
    search: str | None = None,
    sort_by: str | None = None,
    sort_order: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> TaskPage:
    """Without limit or cursor, all of the user's (matching) tasks and their number, as the
    frontend asks today; with them, one page, counted when it is the first."""
    filters = {"status": status, "priority": priority, "tags": tags, "search": search}
    order = {"sort_by": sort_by, "sort_order": sort_order}
    if limit is None and cursor is None:
        tasks = list(iter_tasks(session, user_id, **filters, **order))
        return TaskPage(tasks=tasks, count=len(tasks), has_next=False)
    return list_tasks(
        session, user_id, **filters, **order, limit=limit, cursor=cursor, with_count=not cursor
    )


@app.post("/api/{user_id}/tasks", status_code=201, response_model=TaskRead)
def create_route(user_id: User, session: UserSession, body: TaskCreate) -> Task:
    return create_task(session, user_id, body)


@app.get("/api/{user_id}/tasks/{task_id}", response_model=TaskRead)
def get_route(user_id: User, task_id: int, session: UserSession) -> Task:
    return found(get_task(session, user_id, task_id))


@app.put("/api/{user_id}/tasks/{task_id}", response_model=TaskRead)
def put_route(user_id: User, task_id: int, session: UserSession, body: TaskReplace) -> Task:
    return found(replace_task(session, user_id, task_id, body))


@app.patch("/api/{user_id}/tasks/{task_id}", response_model=TaskRead)
def patch_route(user_id: User, task_id: int, session: UserSession, body: TaskUpdate) -> Task:
    return found(update_task(session, user_id, task_id, body))


@app.delete("/api/{user_id}/tasks/{task_id}", status_code=204)
def delete_route(user_id: User, task_id: int, session: UserSession) -> Response:
    if not delete_task(session, user_id, task_id):
        raise HTTPException(404, NOT_FOUND)
    return Response(status_code=204)
