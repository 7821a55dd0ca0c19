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

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session as OrmSession

from models.policies import APP_ROLE as APP_ROLE  # the declarations: models/policies.py
from models.policies import USER_SETTING

if TYPE_CHECKING:
    from sqlmodel import Session

SET_USER = f"SELECT set_config('{USER_SETTING}', %s, true)"
_INFO_KEY = "app.user_id"
# On a connection of an app engine: its transaction has not set its user yet.
_PENDING = "app.user_pending"


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
    """The user id to bind, or InvalidArgument (a ValueError, one line) for what cannot be one."""
    from models.errors import InvalidArgument

    if not isinstance(user_id, str) or not user_id.strip():
        raise InvalidArgument.of("user_id", "must be a non-empty string")
    if "\x00" in user_id:
        raise InvalidArgument.of("user_id", "must not contain NUL (\\x00) characters")
    if not user_id.isprintable():  # only then can it hold a lone surrogate
        try:
            user_id.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument.of(
                "user_id", "must be valid Unicode (no lone surrogates)"
            ) from None
    return user_id


def bound_user(session: OrmSession) -> str | None:
    """The user this session's transactions run for, if any."""
    user = session.info.get(_INFO_KEY)
    return user if isinstance(user, str) else None


def bind_user(session: OrmSession, user_id: str) -> None:
    """Make every transaction of session (the open one too) run for user_id.

    A session serves one user: binding another user to it raises ValueError. Bound inside
    a savepoint that is then rolled back, the user is set again for the transaction around
    it (a rollback to a savepoint also undoes the setting made in it).
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
    the user, so a refresh after commit works). A session bound to user_id is used as it
    is; one bound to another user raises ValueError. On the app's engine, a transaction
    still open after the block runs its next statement with no user again.
    """
    was_bound = bound_user(session) is not None
    bind_user(session, user_id)  # validates; the same user: as it is; another: ValueError
    try:
        yield
    finally:
        if not was_bound:
            session.info.pop(_INFO_KEY, None)
            connection = _open_connection(session)
            if connection is not None:
                unset_user_later(connection)


def _open_connection(session: OrmSession) -> Connection | None:
    """The connection of the session's open transaction, if it has a usable one."""
    if not session.in_transaction():
        return None
    try:
        connection = session.connection()
    except InvalidRequestError:  # the transaction is over, or its connection was lost
        return None
    return None if connection.invalidated else connection


def set_user(connection: Connection, user_id: str) -> None:
    """Run SET_USER with user_id as a bound parameter, on the DBAPI cursor directly: a
    statement per transaction, so it skips SQLAlchemy's statement machinery (~40% of the
    cost; BENCHMARKS.md, section 9) and its logging and events.

    A failure (a lost connection, most often) is the project's one-line DatabaseError; a
    connection found dead is invalidated, so that closing the session afterwards is quiet.
    """
    connection.info.pop(_PENDING, None)
    try:
        cursor = connection.connection.cursor()
        try:
            cursor.execute(SET_USER, (user_id,))
        finally:
            cursor.close()
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _lost(connection, exc) from None


def _lost(connection: Connection, exc: Any) -> Exception:
    from models.db import explain
    from models.errors import DatabaseError

    raw = connection.connection.dbapi_connection
    if getattr(raw, "closed", 0) or connection.dialect.is_disconnect(exc, raw, None):
        connection.invalidate(exc)
        return DatabaseError(
            f"{explain(exc, connection.engine.url)} (the connection was lost before this "
            "transaction's user was set: nothing of it was committed)"
        )
    return DatabaseError(f"{explain(exc, connection.engine.url)} (setting the transaction's user)")


def unset_user_later(connection: Connection) -> None:
    """On an app engine (see watch_transactions): the next statement of this transaction
    first sets no user (''). Costs nothing if there is none."""
    connection.info[_PENDING] = True


def watch_transactions(engine: Engine) -> None:
    """Fail closed on engine: every transaction sets its user before its first statement,
    '' when no bound session did, so that nothing a server connection carries (a
    session-level `SET app.user_id` from a debugging session, through the SQLAlchemy pool
    or a PgBouncer in transaction mode) is inherited.

    The `begin` event only marks the connection; a bound session's `after_begin` sets its
    user and clears the mark (one statement per transaction either way); otherwise the
    first statement is sent as `UNSET_USER; <statement>` in the same round trip (psycopg2
    sends one simple query; the cursor holds the last statement's result). A transaction
    without statements costs nothing.
    """
    event.listen(engine, "begin", unset_user_later)
    event.listen(engine, "before_cursor_execute", _before_statement, retval=True)


# Constant, no parameter and no '%': safe in front of any statement, with or without
# parameters.
UNSET_USER = f"SELECT set_config('{USER_SETTING}', '', true); "


def _before_statement(
    conn: Connection,
    cursor: Any,
    statement: str,
    parameters: Any,
    context: Any,
    executemany: bool,
) -> tuple[str, Any]:
    if _PENDING not in conn.info:
        return statement, parameters
    if executemany or getattr(cursor, "name", None):  # a batch, or a server-side cursor
        set_user(conn, "")
        return statement, parameters
    del conn.info[_PENDING]
    return UNSET_USER + statement, parameters


@event.listens_for(OrmSession, "after_begin")
def _set_user(session: OrmSession, transaction: Any, connection: Connection) -> None:
    """First statement of each transaction of a bound session: set its user."""
    user = bound_user(session)
    if user is not None:
        set_user(connection, user)


@event.listens_for(OrmSession, "after_soft_rollback")
def _set_user_again(session: OrmSession, previous_transaction: Any) -> None:
    """A rollback to a savepoint also undoes a setting made after it: a bound session whose
    transaction goes on sets its user again (bound before or inside the savepoint alike)."""
    user = bound_user(session)
    connection = _open_connection(session) if previous_transaction.nested else None
    if user is not None and connection is not None:
        set_user(connection, user)


# Why a role escapes row-level security (PostgreSQL's rules): checked on an app engine's
# first connection. A table counts when it is in a user schema; "reachable" means any
# privilege that reads or changes rows.
_ROLE_CHECK = """
WITH r AS (SELECT oid, rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user),
t AS (
    SELECT c.oid, format('%I', c.relname) AS name, c.relowner, c.relrowsecurity AS rls,
           c.relforcerowsecurity AS forced
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
)
SELECT r.rolname, r.rolsuper, r.rolbypassrls,
    ARRAY(SELECT format('%I', m.rolname) FROM pg_roles m WHERE m.oid <> r.oid
            AND (m.rolsuper OR m.rolbypassrls) AND pg_has_role(r.oid, m.oid, 'MEMBER')
          ORDER BY 1),
    ARRAY(SELECT t.name FROM t WHERE t.rls AND t.relowner = r.oid ORDER BY 1),
    ARRAY(SELECT t.name FROM t WHERE t.rls AND t.relowner <> r.oid
            AND pg_has_role(r.oid, t.relowner, 'MEMBER') ORDER BY 1),
    ARRAY(SELECT t.name FROM t WHERE NOT (t.rls AND t.forced)
            AND (has_any_column_privilege(r.oid, t.oid, 'SELECT, INSERT, UPDATE')
                 OR has_table_privilege(r.oid, t.oid, 'DELETE, TRUNCATE'))
          ORDER BY 1),
    ARRAY(SELECT t.name FROM t WHERE t.rls AND has_table_privilege(r.oid, t.oid, 'TRUNCATE')
          ORDER BY 1)
FROM r
"""


def why_unrestricted(dbapi_connection: Any) -> tuple[str, str | None]:
    """(the connection's role, why row-level security does not restrict it, or None)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(_ROLE_CHECK)
        role, superuser, bypass, privileged, owned, member, open_, truncate = cursor.fetchone()
    finally:
        cursor.close()
    dbapi_connection.rollback()  # the check leaves no transaction open

    def names(tables: list[str]) -> str:
        return ", ".join(tables[:3]) + (f" and {len(tables) - 3} more" if len(tables) > 3 else "")

    if superuser:
        return role, "it is a superuser"
    if bypass:
        return role, "it has BYPASSRLS"
    if privileged:
        return role, f"it can SET ROLE to {names(privileged)}, a superuser or BYPASSRLS role"
    if owned:
        return role, f"it owns {names(owned)}"
    if member:
        return role, f"it is a member of the owner of {names(member)}"
    if open_:
        return role, f"it can reach {names(open_)}, without forced row-level security"
    if truncate:
        return role, f"it may TRUNCATE {names(truncate)} (TRUNCATE ignores row-level security)"
    return role, None


def get_user_session(user_id: str) -> Iterator[Session]:
    """The session of a request on behalf of user_id: every transaction runs for that user.

    The one dependency an app needs (FastAPI: models.api.user_session(authenticated_user)
    binds it to the user your auth dependency returns). user_id is checked like the
    data-access functions check an owner: InvalidArgument (HTTP 422) for a blank, NUL,
    too long or non-string id, before any connection is taken.
    """
    from sqlmodel import Session  # here, not at the top: see models/__init__.py

    from models.crud import owner
    from models.db import get_engine

    user_id = owner(user_id)
    with Session(get_engine()) as session:
        bind_user(session, user_id)
        yield session
