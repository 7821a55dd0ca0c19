"""CLIENT.md's routes on FastAPI, as the Stage 2 API mounts them (test code, not the product).

Sync routes with `Depends(get_session)`, an HS256 JWT whose `user_id` (or `sub`) claim must
equal the path's user_id, and one exception handler that turns the data layer's
InvalidArgument into FastAPI's own 422 shape.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel import Session

from models import (
    InvalidArgument,
    Priority,
    TaskCreate,
    TaskRead,
    TaskReplace,
    TaskUpdate,
    create_task,
    delete_task,
    get_session,
    get_task,
    list_tasks,
    replace_task,
    update_task,
)

SECRET = "test-only-secret-of-at-least-32-bytes!"
NOT_FOUND = "Task not found"
app = FastAPI()
DbSession = Annotated[Session, Depends(get_session)]


def token(user_id: str) -> str:
    """A token the frontend's auth would sign for user_id."""
    return jwt.encode({"user_id": user_id}, SECRET, algorithm="HS256")


def owner(user_id: str, authorization: Annotated[str | None, Header()] = None) -> str:
    """401 without a valid token, 403 when the path is another user's."""
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


Owner = Annotated[str, Depends(owner)]


@app.exception_handler(InvalidArgument)
def invalid_argument(request: Request, exc: InvalidArgument) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content={"detail": exc.errors()})


def found(task: Any) -> TaskRead:
    if task is None:
        raise HTTPException(404, NOT_FOUND)
    return TaskRead.model_validate(task)


@app.get("/api/{user_id}/tasks")
def list_route(
    user_id: Owner,
    session: DbSession,
    status: Literal["all", "pending", "completed"] = "all",
    priority: Priority | None = None,
    tags: Annotated[list[str] | None, Query()] = None,
    search: str | None = None,
    sort_by: str = "created_at",
    sort_order: str = "desc",
    limit: int = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    page = list_tasks(
        session,
        user_id,
        status=status,
        priority=priority,
        tags=tags,
        search=search,
        sort_by=sort_by,
        sort_order=sort_order,
        limit=limit,
        cursor=cursor,
    )
    return page.model_dump(mode="json")


@app.post("/api/{user_id}/tasks", status_code=201)
def create_route(user_id: Owner, session: DbSession, body: TaskCreate) -> TaskRead:
    return TaskRead.model_validate(create_task(session, user_id, body))


@app.get("/api/{user_id}/tasks/{task_id}")
def get_route(user_id: Owner, task_id: int, session: DbSession) -> TaskRead:
    return found(get_task(session, user_id, task_id))


@app.put("/api/{user_id}/tasks/{task_id}")
def put_route(user_id: Owner, task_id: int, session: DbSession, body: TaskReplace) -> TaskRead:
    return found(replace_task(session, user_id, task_id, body))


@app.patch("/api/{user_id}/tasks/{task_id}")
def patch_route(user_id: Owner, task_id: int, session: DbSession, body: TaskUpdate) -> TaskRead:
    if not body.model_fields_set:
        raise HTTPException(400, "No fields to update")
    return found(update_task(session, user_id, task_id, body))


@app.delete("/api/{user_id}/tasks/{task_id}", status_code=204)
def delete_route(user_id: Owner, task_id: int, session: DbSession) -> Response:
    if not delete_task(session, user_id, task_id):
        raise HTTPException(404, NOT_FOUND)
    return Response(status_code=204)
