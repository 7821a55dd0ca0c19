"""Tenant isolation in PostgreSQL at run time: one user per transaction (the app role and
the row-level security policies the migrations build are declared in models/policies.py).

Every transaction of a user-bound session starts with
`SELECT set_config('app.user_id', :user_id, true)`: a setting local to that transaction,
so it also holds through PgBouncer in transaction mode, and it is never left behind on a
pooled connection. The policies compare each row's user_id with it; no user set (or '',
what a reset setting reads as) matches no row: a session without a user sees nothing
and can write nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event
from sqlalchemy.orm import Session as OrmSession

from models.policies import APP_ROLE as APP_ROLE  # the declarations: models/policies.py
from models.policies import USER_SETTING

if TYPE_CHECKING:
    from sqlmodel import Session

SET_USER = f"SELECT set_config('{USER_SETTING}', %s, true)"
_INFO_KEY = "app.user_id"


def create_app_role(conn: Connection, role: str = APP_ROLE) -> None:
    """Create the app role on this server unless it exists (roles are server-wide).

    For the embedded default and the tests; on Neon see docs/security.md.
    """
    conn.exec_driver_sql(
        "DO $$ BEGIN "
        f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
        "NOBYPASSRLS; "
        "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    )


def valid_user_id(user_id: object) -> str:
    """The user id to bind, or ValueError (one line) for what cannot be one."""
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValueError("user_id must be a non-empty string")
    if "\x00" in user_id:
        raise ValueError("user_id must not contain NUL (\\x00) characters")
    return user_id


def bound_user(session: OrmSession) -> str | None:
    """The user this session's transactions run for, if any."""
    user = session.info.get(_INFO_KEY)
    return user if isinstance(user, str) else None


def bind_user(session: OrmSession, user_id: str) -> None:
    """Make every transaction of session (the open one too) run for user_id.

    A session serves one user: binding another user to it raises ValueError.
    """
    user_id = valid_user_id(user_id)
    current = bound_user(session)
    if current == user_id:
        return
    if current is not None:
        raise ValueError("this session is bound to another user: use one session per user")
    session.info[_INFO_KEY] = user_id
    if session.in_transaction():
        set_user(session.connection(), user_id)


@contextmanager
def acting_as(session: OrmSession, user_id: str) -> Iterator[None]:
    """For the data-access functions: run the block for user_id.

    An unbound session is bound for the block only (every transaction begun inside sets
    the user, so a refresh after commit works; a transaction open now is set at once and
    keeps the user until it ends). A session bound to user_id is used as it is; one bound
    to another user raises ValueError.
    """
    was_bound = bound_user(session) is not None
    bind_user(session, user_id)  # validates; the same user: as it is; another: ValueError
    try:
        yield
    finally:
        if not was_bound:
            session.info.pop(_INFO_KEY, None)


def set_user(connection: Connection, user_id: str) -> None:
    """Run SET_USER with user_id as a bound parameter, on the DBAPI cursor directly: a
    statement per transaction, so it skips SQLAlchemy's statement machinery (~40% of the
    cost; BENCHMARKS.md, section 9) and its logging and events."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(SET_USER, (user_id,))
    finally:
        cursor.close()


@event.listens_for(OrmSession, "after_begin")
def _set_user(session: OrmSession, transaction: Any, connection: Connection) -> None:
    """First statement of each transaction of a bound session: set its user."""
    user = bound_user(session)
    if user is not None:
        set_user(connection, user)


def get_user_session(user_id: str) -> Iterator[Session]:
    """A session whose every transaction runs for user_id, on the app's engine.

    FastAPI: `def db(user: str = Depends(authenticated_user)): yield from
    get_user_session(user)`, then `Depends(db)` in the routes.
    """
    from sqlmodel import Session  # here, not at the top: see models/__init__.py

    from models.db import get_engine

    with Session(get_engine()) as session:
        bind_user(session, user_id)
        yield session
