"""The SECURITY DEFINER check (tests/checks/definer.py, check 14): the list's functions pass;
a function that leaks, one without a fixed search_path and one that PUBLIC may run fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.listing import DEFINER_PROBES
from tests.checks import SchemaCheckError, check_definer_functions
from tests.support import PgServer, alembic_config, head, revision, with_revisions

pytestmark = pytest.mark.schema

# Three functions on top of head, each wrong in one way.
FLAWED = """
for sql in (
    "CREATE FUNCTION zz_leaky() RETURNS SETOF bigint LANGUAGE sql STABLE SECURITY DEFINER "
    "SET search_path = pg_catalog, pg_temp AS 'SELECT id FROM public.tasks'",
    "CREATE FUNCTION zz_no_path() RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER AS "
    "$$SELECT count(*) FROM public.tasks WHERE user_id = current_setting('app.user_id', true)$$",
    "CREATE FUNCTION zz_public() RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER "
    "SET search_path = pg_catalog, pg_temp AS "
    "$$SELECT count(*) FROM public.tasks WHERE user_id = current_setting('app.user_id', true)$$",
):
    op.execute(sql)
op.execute("GRANT EXECUTE ON FUNCTION zz_leaky() TO todo_app")
op.execute("REVOKE ALL ON FUNCTION zz_leaky() FROM PUBLIC")
op.execute("REVOKE ALL ON FUNCTION zz_no_path() FROM PUBLIC")
op.execute("GRANT EXECUTE ON FUNCTION zz_no_path() TO todo_app")
"""


def test_the_project_passes(pg_server: PgServer) -> None:
    """tasks_page_ids and tasks_count (0012) return only the bound user's ids, every probe."""
    check_definer_functions(alembic_config(), pg_server)


def test_leaky_unsafe_and_undeclared_functions_are_caught(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """A function that ignores the user, one without search_path, one PUBLIC may execute, and
    a declared function the migrations do not build: each named with what is wrong."""
    cfg = with_revisions(tmp_path, a9001_flawed=revision("9001", head(), FLAWED))
    probes = {
        **DEFINER_PROBES,
        "zz_leaky": ("SELECT zz_leaky()",),
        "zz_no_path": ("SELECT zz_no_path()",),
        "zz_missing": ("SELECT 1",),
    }
    with pytest.raises(SchemaCheckError) as failed:
        check_definer_functions(cfg, pg_server, probes=probes)
    message = str(failed.value)
    assert message.startswith("A SECURITY DEFINER function is unsafe or returns other users'")
    assert "zz_leaky: `SELECT zz_leaky()` returns another user's rows" in message
    assert "zz_leaky: `SELECT zz_leaky()` returns rows with no user bound" in message
    assert "zz_no_path: has no fixed search_path ending with pg_temp" in message
    assert "zz_public: may be executed by PUBLIC" in message
    assert "zz_public: is not declared with its probes" in message
    assert "zz_missing: is declared in models/listing.py (DEFINER_PROBES), not in" in message
    assert "tasks_page_ids" not in message and "tasks_count" not in message
