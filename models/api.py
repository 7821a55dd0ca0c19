"""FastAPI wiring: the user's session dependency and the exception handlers, in two lines.

Optional (`pip install 'todo-schema[api]'`): only this module imports FastAPI, and only
when a function of it runs, so every module of models/ imports without the extra (as
`alembic check` and autogenerate import them all).

    from models import api

    app = FastAPI()
    api.install(app)  # InvalidArgument -> 422 (400 for an empty update), Conflict -> 412,
                      # DatabaseError -> 503, request validation -> 422 that never echoes
    UserSession = Annotated[Session, Depends(api.user_session(current_user))]

`current_user` is your auth dependency: it returns the id of the user the request is
verified to act for. Every transaction of the session runs for that user (row-level
security), so a route that forgets a filter still sees only that user's tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from models.errors import Conflict, DatabaseError, InvalidArgument
from models.security import get_user_session

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

log = logging.getLogger("models")
UNAVAILABLE = "The database is not available right now: try again in a moment"
RETRY_AFTER_SECONDS = "5"


def user_session(current_user: Callable[..., str]) -> Callable[..., Iterator[Session]]:
    """The dependency for a request on behalf of a user: a session bound to the user id that
    current_user (your auth dependency) returns. A bad id is InvalidArgument (422)."""
    from fastapi import Depends

    def session(user_id: str = Depends(current_user)) -> Iterator[Session]:
        yield from get_user_session(user_id)

    return session


def _text(value: object) -> str | int:
    """value as JSON can carry it: a lone surrogate (invalid UTF-8) becomes '?'."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return str(value).encode("utf-8", "replace").decode()


def safe_errors(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's 422 `detail` (loc, msg, type) without the input or its context: what the
    client sent is never echoed, so nothing it sent (NaN, a lone surrogate) can make the
    answer itself fail."""
    return [
        {
            "loc": [_text(part) for part in error.get("loc", ())],
            "msg": _text(error.get("msg", "")),
            "type": _text(error.get("type", "value_error")),
        }
        for error in errors
    ]


def invalid_argument(request: Request, exc: Exception) -> JSONResponse:
    """InvalidArgument: 422 with FastAPI's detail list; an empty update (NothingToUpdate,
    status 400) as CLIENT.md has it: `{"detail": "No fields to update"}`."""
    from fastapi.responses import JSONResponse

    assert isinstance(exc, InvalidArgument)
    errors = safe_errors(exc.errors())
    if exc.status_code == 422:
        return JSONResponse(status_code=422, content={"detail": errors})
    return JSONResponse(status_code=exc.status_code, content={"detail": errors[0]["msg"]})


def request_validation(request: Request, exc: Exception) -> JSONResponse:
    """A request FastAPI could not validate: 422, its errors without the input."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content={"detail": safe_errors(exc.errors())})


def conflict(request: Request, exc: Exception) -> JSONResponse:
    """Conflict (an update's expected_updated_at is stale): 412 with its one line; the
    client reads the task again and retries."""
    from fastapi.responses import JSONResponse

    assert isinstance(exc, Conflict)
    return JSONResponse(status_code=exc.status_code, content={"detail": str(exc)})


def database_error(request: Request, exc: Exception) -> JSONResponse:
    """DatabaseError (unreachable, lost connection, pool exhausted): 503 with one line; the
    error's own line (where, what to check) goes to the log, not to the client."""
    from fastapi.responses import JSONResponse

    log.error("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        status_code=503,
        content={"detail": UNAVAILABLE},
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def install(app: FastAPI) -> None:
    """Install the data layer's exception handlers on app."""
    from fastapi.exceptions import RequestValidationError

    app.add_exception_handler(InvalidArgument, invalid_argument)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(Conflict, conflict)
    app.add_exception_handler(DatabaseError, database_error)
