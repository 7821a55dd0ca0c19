"""14. SECURITY DEFINER functions return only the bound user's rows.

    check_definer_functions(cfg, server)

A SECURITY DEFINER function runs as its owner, the tables' owner, whom the policies let
see every row: only the function itself keeps one user from another's rows. So after
`alembic upgrade head` on a fresh database, every such function of the schema (not an
extension's):
- is declared with the calls that probe it (models/listing.py, DEFINER_PROBES), and every
  declared function exists;
- has a fixed search_path ending with pg_temp (nothing a caller creates can stand in for a
  table, function or operator it names);
- is owned by the owner of the tables with a user_id;
- may be executed by the app role, and not by PUBLIC;
- for each probe, called as the app role for a bound user: returns something, returns
  exactly the same once the other user's rows (the same tasks, PROBE_ROWS) are deleted
  (none of theirs shows, not even in a count), and returns nothing with no user bound.
Its downgrade is proven by checks 3 and 4 (functions and their grants are in pg_dump),
its presence by the snapshot (7).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from sqlalchemy import Connection, create_engine, pool

from models.listing import DEFINER_PROBES, PROBE_ROWS
from models.security import APP_ROLE
from tests.checks.common import SchemaCheckError, alembic_step, bound, first_line, history
from tests.support import PgServer

DECLARATION = "models/listing.py (DEFINER_PROBES)"
USERS = ("definer-check-a", "definer-check-b")
FUNCTIONS = """
SELECT p.proname, pg_get_userbyid(p.proowner), p.proconfig,
    has_function_privilege(:role, p.oid, 'EXECUTE'),
    EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
            WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                    AND d.objid = p.oid AND d.deptype = 'e')
ORDER BY 1
"""
TABLE_OWNERS = """
SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
"""


def search_path(config: list[str] | None) -> list[str] | None:
    """The schemas of a function's `SET search_path`, or None when it sets none."""
    for setting in config or []:
        key, _, value = setting.partition("=")
        if key == "search_path":
            return [part.strip().strip('"') for part in value.split(",")]
    return None


def static_findings(conn: Connection, app_role: str) -> dict[str, list[str]]:
    """function -> what is wrong with how it is defined (empty: nothing)."""
    owners = set(conn.execute(sa.text(TABLE_OWNERS)).scalars())
    found: dict[str, list[str]] = {}
    for name, owner, config, app_may, public_may in conn.execute(
        sa.text(FUNCTIONS), {"role": app_role}
    ):
        problems = found.setdefault(name, [])
        path = search_path(config)
        if path is None or path[-1] != "pg_temp":
            problems.append(
                "has no fixed search_path ending with pg_temp (SET search_path = "
                "pg_catalog, pg_temp): a caller's own objects could stand in for its names"
            )
        if owners and owner not in owners:
            problems.append(f"is owned by {owner}, not by the tables' owner ({', '.join(owners)})")
        if public_may:
            problems.append("may be executed by PUBLIC: REVOKE ALL ON FUNCTION ... FROM PUBLIC")
        if not app_may:
            problems.append(f"may not be executed by the app role {app_role}")
    return found


def _empty(result: list[Any]) -> bool:
    return all(value in (None, 0) for row in result for value in row)


def behaviour_findings(
    cfg_conn: Connection, app: Connection, probes: Mapping[str, tuple[str, ...]]
) -> dict[str, list[str]]:
    """function -> each probe that returns another user's rows, nothing, or something
    without a user. cfg_conn (the owner) seeds and deletes; app runs the probes."""
    mine, theirs = USERS

    def run(user: str, probe: str) -> list[Any] | str:
        try:
            with app.begin():
                app.execute(sa.text("SELECT set_config('app.user_id', :u, true)"), {"u": user})
                return [tuple(row) for row in app.execute(sa.text(probe))]
        except sa.exc.DBAPIError as exc:
            return f"fails: {first_line(exc)}"

    for user in USERS:
        cfg_conn.execute(sa.text(PROBE_ROWS), {"user": user})
    cfg_conn.commit()
    both = {(f, p): (run(mine, p), run("", p)) for f, calls in probes.items() for p in calls}
    cfg_conn.execute(sa.text("DELETE FROM tasks WHERE user_id = :u"), {"u": theirs})
    cfg_conn.commit()
    found: dict[str, list[str]] = {}
    for (function, probe), (result, unbound) in both.items():
        problems = found.setdefault(function, [])
        alone = run(mine, probe)
        if isinstance(result, str):
            problems.append(f"`{probe}` {result}")
        elif result != alone:
            problems.append(f"`{probe}` returns another user's rows (it changes when they go)")
        elif _empty(result):
            problems.append(f"`{probe}` returns nothing for a user with matching rows")
        if not isinstance(unbound, str) and not _empty(unbound):
            problems.append(f"`{probe}` returns rows with no user bound (app.user_id '')")
    return found


def check_definer_functions(
    cfg: Config,
    server: PgServer,
    probes: Mapping[str, tuple[str, ...]] | None = None,
    app_role: str = APP_ROLE,
) -> None:
    """14. Every SECURITY DEFINER function at head is safe and returns only the bound
    user's rows (see the module doc)."""
    probes = DEFINER_PROBES if probes is None else probes
    history(cfg)  # a history that cannot be read fails here, in one line
    with server.database("definer") as name, bound(cfg, server, name) as conn:
        alembic_step(cfg, "head")
        conn.commit()
        found = static_findings(conn, app_role)
        for function in sorted(set(probes) - set(found)):
            found[function] = [f"is declared in {DECLARATION}, not in the database"]
        for function in sorted(set(found) - set(probes)):
            found[function].append(f"is not declared with its probes in {DECLARATION}")
        app_server = replace(server, user=app_role, password=None)
        app_engine = create_engine(app_server.url(name), poolclass=pool.NullPool)
        try:
            with app_engine.connect() as app:
                declared = {f: calls for f, calls in probes.items() if f in found}
                for function, problems in behaviour_findings(conn, app, declared).items():
                    found[function] += problems
        finally:
            app_engine.dispose()
    lines = [f"  - {function}: {p}" for function, problems in found.items() for p in problems]
    if lines:
        raise SchemaCheckError(
            f"A SECURITY DEFINER function is unsafe or returns other users' rows "
            f"({len(lines)} finding(s)): it runs as the tables' owner, past row-level "
            "security.\n" + "\n".join(lines) + "\nFix the revision that creates it (its "
            f"user condition, search_path, owner, grants), and declare its probes in "
            f"{DECLARATION}."
        )
