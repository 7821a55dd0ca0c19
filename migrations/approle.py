"""The app role's first deploy: created, without a login, where the migrations may.

Revision 0010 requires the app role (roles are server-wide, so no revision creates or
drops one). On a server without it, an online `alembic upgrade` to 0010 or later creates
it first, as NOLOGIN and with no right of its own, when the migrating role may
create roles (a superuser, or CREATEROLE as Neon's owner role has), and says in one line
how to give it a login. Otherwise 0010 refuses as it always did, saying how to create it.

env.py calls `ensure_app_role` once per run, before the revisions; it leaves the
connection with no transaction open.
"""

from __future__ import annotations

import logging

from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from models.policies import APP_ROLE

log = logging.getLogger("models")
FIRST_NEEDED_BY = "0010"  # the first revision that requires the app role
ATTRIBUTES = "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
DUPLICATE_OBJECT = "42710"
HOW_TO_LOGIN = f"ALTER ROLE {APP_ROLE} LOGIN PASSWORD '...'"


def runs_through(revision: str) -> bool:
    """True when this run's destination is `revision` or after it (an upgrade to head, or a
    downgrade that keeps it); False for anything else (check, autogenerate, a relative or
    an unknown target). The version table is not read: another transaction may hold it,
    which the run itself reports."""
    script = context.script
    try:
        destination = context.get_revision_argument()  # KeyError: a command without one
        if destination is None:
            return False
        targets = tuple(r.revision for r in script.get_revisions(destination) if r is not None)
        if not targets:
            return False
        return any(rev.revision == revision for rev in script.iterate_revisions(targets, "base"))
    except (KeyError, CommandError):  # none, or relative or unknown: Alembic says so itself
        return False


def ensure_app_role(connection: Connection) -> None:
    """Create the app role (NOLOGIN) before a run to a revision that needs it, if it is
    missing and the migrating role may create roles; say how to give it a login."""
    try:
        if not runs_through(FIRST_NEEDED_BY):
            return
        missing, may = connection.execute(
            text(
                "SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :role), "
                "rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
            ),
            {"role": APP_ROLE},
        ).one()
        if missing and may:
            try:
                connection.exec_driver_sql(f"CREATE ROLE {APP_ROLE} {ATTRIBUTES}")
                connection.commit()
            except DBAPIError as exc:
                if getattr(exc.orig, "pgcode", None) != DUPLICATE_OBJECT:
                    raise
                return  # another deploy on this server created it just now
            log.warning(
                "Created the app role %s (NOLOGIN, owns nothing) for row-level security; give it "
                "a login once, as this role: %s; the app connects as %s (docs/deploying.md).",
                APP_ROLE,
                HOW_TO_LOGIN,
                APP_ROLE,
            )
    finally:
        if connection.in_transaction():
            connection.rollback()
