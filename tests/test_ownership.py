"""Other tools' tables are left alone (migrations/ownership.py).

A database holds, beside a synthetic history's own table, an auth library's tables with
rows (`user`, a reserved word, `session`, `account`, `verification`; each refuses any
row written, so a run that writes to one fails). `alembic check`, autogenerate, upgrades and
downgrades, the schema checks and the snapshot leave them byte-identical and name them in
one line; a removed model's table (created by a revision) still gets its DROP, which the
upgrade guard then refuses while it holds rows.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import CommandLine
from alembic.util import CommandError
from sqlalchemy import create_engine, pool

from migrations.ownership import Ownership, notice, revision_tables, tables_in_sql
from models.local import pg_program
from models.naming import NAMING_CONVENTION
from tests import checks
from tests.checks.common import scripts
from tests.support import PgServer, revision
from tests.synthetic import base_metadata, history
from tests.test_new_tables import Synthetic, body

AUTH = ("account", "session", "user", "verification")
NOTICE = "Leaving 4 tables of other tools alone: account, session, user, verification ("
# An auth library's tables (text ids, camelCase columns, a serial), rows in each, one the
# app role may read (no row-level security there: not ours to compare); from here on, a
# CHECK (false) NOT VALID refuses any row written to them.
NEIGHBOURS = """
CREATE TABLE "user" (id text PRIMARY KEY, email text NOT NULL UNIQUE,
                     "emailVerified" boolean NOT NULL DEFAULT false);
CREATE TABLE session (id text PRIMARY KEY, token text NOT NULL UNIQUE,
                      "userId" text NOT NULL REFERENCES "user" (id) ON DELETE CASCADE);
CREATE TABLE account (id text PRIMARY KEY, "providerId" text NOT NULL,
                      "userId" text NOT NULL REFERENCES "user" (id) ON DELETE CASCADE);
CREATE TABLE verification (id serial PRIMARY KEY, identifier text NOT NULL, value text);
INSERT INTO "user" VALUES ('u1', 'ann@example.com', true), ('u2', 'bob@example.com', false);
INSERT INTO session VALUES ('s1', 'tok', 'u1');
INSERT INTO account VALUES ('a1', 'credential', 'u1'), ('a2', 'github', 'u2');
INSERT INTO verification (identifier, value) VALUES ('ann@example.com', '123456');
GRANT SELECT ON "user" TO todo_app;
ALTER TABLE "user" ADD CONSTRAINT no_writes CHECK (false) NOT VALID;
ALTER TABLE session ADD CONSTRAINT no_writes CHECK (false) NOT VALID;
ALTER TABLE account ADD CONSTRAINT no_writes CHECK (false) NOT VALID;
ALTER TABLE verification ADD CONSTRAINT no_writes CHECK (false) NOT VALID;
"""


@pytest.fixture(scope="module")
def neighbours(pg_server: PgServer) -> Iterator[PgServer]:
    """The server, with every new database a copy of one holding the auth tables."""
    with pg_server.database("neighbours") as name:
        engine = create_engine(pg_server.url(name), poolclass=pool.NullPool)
        with engine.begin() as conn:
            conn.exec_driver_sql(NEIGHBOURS)
        engine.dispose()
        yield replace(pg_server, template=name)


def dump_auth_tables(server: PgServer, dbname: str) -> str:
    """pg_dump of the auth tables, schema and rows."""
    tables = [f'--table="{name}"' for name in AUTH]
    done = subprocess.run(
        [pg_program("pg_dump"), "--no-owner", *tables, server.dsn(dbname)],
        capture_output=True,
        text=True,
        check=True,
    )
    return "\n".join(line for line in done.stdout.splitlines() if "restrict" not in line)


def test_a_history_leaves_other_tools_tables_alone_and_drops_its_own(
    neighbours: PgServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With the auth tables holding rows: the upgrade names them; `alembic check` (as the
    command line parses it) is clean and names them; autogenerate writes nothing; a removed
    model writes the DROP of its own table only, which the upgrade refuses while it holds
    rows (count, flag) and runs with the flag; a model mapping `user`, declared foreign,
    writes nothing; up and down again, the auth tables stay byte-identical."""
    cfg = history(tmp_path)
    versions = Path(str(cfg.get_main_option("version_locations")))
    with neighbours.database("owned") as name:
        engine = create_engine(neighbours.url(name), poolclass=pool.NullPool)
        space = Synthetic(engine, versions, neighbours)
        before = dump_auth_tables(neighbours, name)
        metadata, _ = base_metadata()
        with caplog.at_level(logging.INFO, logger="models"):
            space.migrate()
            assert caplog.text.count(NOTICE) == 1
            with engine.connect() as conn:
                cli = space.config(metadata, connection=conn)
                cli.cmd_opts = CommandLine(prog="alembic").parser.parse_args(["check"])
                command.check(cli)
            assert space.autogenerate(metadata, "nothing") == []
        assert caplog.text.count(NOTICE) == 3
        space.run("INSERT INTO items (name) VALUES ('a'), ('b')")

        empty = sa.MetaData(naming_convention=NAMING_CONVENTION)
        [drop] = space.autogenerate(empty, "no items")
        upgrade = body(drop).split("def downgrade")[0]
        assert "op.drop_table('items')" in upgrade and upgrade.count("op.drop_table") == 1
        assert "# DESTRUCTIVE: drops table items and its rows; refuses while it holds" in upgrade
        with pytest.raises(CommandError) as refused:
            space.migrate()
        assert str(refused.value) == (
            "upgrade of revision 0002 refused: it would drop table items and its 2 row(s); "
            "nothing was dropped, the database is at 0001. To drop the data, run: alembic "
            '-x allow-data-loss=true upgrade head (in Python: config.attributes["allow_data_loss"]'
            " = True)"
        )
        space.migrate(allow_data_loss=True)
        assert space.run("SELECT to_regclass('items')") is None

        mapped = sa.MetaData(naming_convention=NAMING_CONVENTION)
        sa.Table("user", mapped, sa.Column("id", sa.Integer, primary_key=True))
        with engine.connect() as conn:
            model_of_user = space.config(mapped, connection=conn)
            model_of_user.set_section_option("ownership", "foreign_tables", "")  # undeclared
            with pytest.raises(CommandError, match=r"column user\.email .* not in the models"):
                command.check(model_of_user)  # a model names it: ours, compared
            model_of_user.set_section_option("ownership", "foreign_tables", "user")
            command.check(model_of_user)  # declared foreign: left alone
        space.migrate("base", down=True, allow_data_loss=True)
        space.migrate(allow_data_loss=True)
        assert dump_auth_tables(neighbours, name) == before
        engine.dispose()


def test_the_checks_and_the_snapshot_leave_other_tools_tables_out(
    neighbours: PgServer, pg_server: PgServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On a server whose new databases hold the auth tables: the snapshot is the one
    without them, the models match, and data survives (no sample row is written to them:
    they refuse writes); each check names them (a line per Alembic run). Nothing declares
    them here (alembic.ini does): that they are no model's and no revision's is enough."""
    cfg = history(tmp_path)
    cfg.set_section_option("ownership", "foreign_tables", "")
    alone = checks.render_snapshot(cfg, pg_server)
    with named(caplog):
        assert checks.render_snapshot(cfg, neighbours) == alone
    with named(caplog):
        checks.check_models_match(cfg, neighbours, base_metadata()[0])
    with named(caplog):
        checks.check_data_survives(cfg, neighbours)


@contextmanager
def named(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The block's runs name the auth tables in the one-line notice."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="models"):
        yield
    assert NOTICE in caplog.text


def test_which_tables_a_history_creates(tmp_path: Path) -> None:
    """Tables from op.create_table and from raw SQL (quoted, qualified, a view, a rename)
    count as created; another schema's and a dropped one's name do not make them ours
    twice; a declared name or prefix is foreign even so."""
    cfg = history(
        tmp_path,
        a0002=revision(
            "0002",
            "0001",
            """
            op.execute('CREATE TABLE "Audit" (id int)')
            op.execute("CREATE TABLE IF NOT EXISTS public.log (id int)")
            op.execute("CREATE TABLE other.elsewhere (id int)")
            op.execute("CREATE MATERIALIZED VIEW totals AS SELECT 1")
            op.rename_table("log", "journal")
            """,
        ),
        a0003=revision(
            "0003",
            "0002",
            """
            op.get_bind().execute(sa.text("SELECT 1"))  # cannot run offline: source read
            op.create_table("scratch", sa.Column("id", sa.Integer))
            """,
        ),
    )
    made = revision_tables(scripts(cfg))
    assert made == {"items", "Audit", "log", "totals", "journal", "scratch"}
    assert tables_in_sql('create unlogged table "we""ird" (x int)') == {'we"ird'}
    owned = Ownership(
        models=frozenset({"notes"}), revisions=made, declared=frozenset({"log"}), prefixes=("au",)
    )
    assert [owned.is_ours(t) for t in ("notes", "items", "log", "audit", "Audit", "user")] == [
        True,
        True,
        False,
        False,
        True,
        False,
    ]
    assert notice(["b", "a"]) is not None and notice([]) is None
