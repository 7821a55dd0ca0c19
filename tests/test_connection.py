"""Connections: URL mapping, TLS, the pool, and one clear line for every bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from models.db import (
    URL_HINT,
    explain,
    make_engine,
    parse_url,
    resolve_url,
    wait_for_database,
)
from models.errors import DatabaseError
from models.settings import Settings
from tests.support import PgServer, run_python


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg2"])
def test_postgres_schemes_map_to_the_driver(scheme: str) -> None:
    """postgres://, postgresql:// (and the explicit driver) all use psycopg2."""
    assert parse_url(f"{scheme}://u:p@localhost/db").drivername == "postgresql+psycopg2"


def test_tls_authenticates_off_box_unless_the_url_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A non-local host gets verify-full against the system's roots (a file that exists),
    Neon channel binding too; a root the URL names is kept; local hosts and an explicit
    sslmode are left alone."""
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.postgresql/root.crt
    monkeypatch.delenv("PGSSLROOTCERT", raising=False)
    neon = parse_url("postgresql://u:p@ep-x.neon.tech/db").query
    assert (neon["sslmode"], neon["channel_binding"]) == ("verify-full", "require")
    assert Path(str(neon["sslrootcert"])).is_file()
    own = parse_url("postgresql://u:p@db.example.com/db?sslrootcert=/etc/mine.crt").query
    assert (own["sslmode"], own["sslrootcert"]) == ("verify-full", "/etc/mine.crt")
    assert "channel_binding" not in own  # libpq's default: prefer
    assert "sslmode" not in parse_url("postgresql://u:p@localhost/db").query
    assert "sslmode" not in parse_url("postgresql://u@/db?host=/tmp").query
    url = parse_url("postgresql://u:p@db.internal/db?sslmode=disable")
    assert url.query["sslmode"] == "disable"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("localhost:5432/todo", "not a valid database URL"),
        ("not a url at all s3cret", "spaces or control characters"),
        ("not-a-url-s3cret", "not a valid database URL"),
        ("postgresql://u:p@ss@host/db", "more than one '@'"),
        ("postgresql:///u:s3cret@host/db", "look at the database part"),
        ("mysql://u:s3cret@host/db", "unsupported scheme 'mysql'"),
        ("redis://localhost/0", "unsupported scheme 'redis'"),
    ],
)
def test_bad_urls_say_what_is_wrong_without_the_password(raw: str, expected: str) -> None:
    """A malformed URL or unknown scheme is one line naming the problem, password masked."""
    with pytest.raises(DatabaseError) as exc:
        parse_url(raw)
    message = str(exc.value)
    assert expected in message and "\n" not in message
    assert "s3cret" not in message


def test_pool_settings(tmp_path: Path) -> None:
    """The engine pools 5 + 15 connections, pre-pings, and recycles before Neon drops them."""
    settings = Settings.from_env({"DB_POOL_RECYCLE_SECONDS": "120"})
    engine = make_engine(parse_url("postgresql://u:p@localhost/db"), settings)
    pool = engine.pool
    assert pool.size() == 5  # type: ignore[attr-defined]
    assert pool._max_overflow == 15  # type: ignore[attr-defined]
    assert pool._pre_ping is True
    assert pool._recycle == 120


def test_settings_read_env_and_reject_nonsense() -> None:
    """Settings come from the environment; a bad number is one clear error."""
    settings = Settings.from_env(
        {"DATABASE_URL": " postgresql://a/b ", "DATABASE_URL_UNPOOLED": "postgresql://c/d"}
    )
    assert settings.database_url == "postgresql://a/b"
    assert resolve_url(settings, for_migrations=True).host == "c"
    assert resolve_url(settings).host == "a"
    with pytest.raises(DatabaseError, match="DB_CONNECT_RETRY_SECONDS"):
        Settings.from_env({"DB_CONNECT_RETRY_SECONDS": "soon"})


def test_unreachable_server_is_retried_then_explained() -> None:
    """A refused connection is retried with backoff for the bounded time, then one line."""
    url = parse_url("postgresql://u:s3cret@127.0.0.1:9/db")
    engine = create_engine(url)
    import time

    start = time.monotonic()
    with pytest.raises(DatabaseError) as exc:
        wait_for_database(engine, retry_seconds=0.5)
    assert time.monotonic() - start >= 0.5
    message = str(exc.value)
    assert message.startswith("cannot reach PostgreSQL at postgresql+psycopg2://***@127.0.0.1:9/db")
    assert "gave up after 0.5s" in message and "s3cret" not in message


@pytest.fixture
def password_user(pg_server: PgServer) -> PgServer:
    """A role that must log in with a password (scram), on the throwaway server."""
    admin = create_engine(pg_server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP ROLE IF EXISTS pw_user"))
        conn.execute(text("CREATE ROLE pw_user LOGIN PASSWORD 'right-pw'"))
        hba = conn.execute(text("SHOW hba_file")).scalar_one()
        lines = Path(hba).read_text()
        rule = "local all pw_user scram-sha-256\n"
        if rule not in lines:
            Path(hba).write_text(rule + lines)
            conn.execute(text("SELECT pg_reload_conf()"))
    admin.dispose()
    return PgServer(pg_server.host, pg_server.port, "pw_user", "wrong-pw")


def test_wrong_password_is_one_line_and_not_retried(password_user: PgServer) -> None:
    """A wrong password fails at once with one line naming the user, password masked."""
    engine = create_engine(password_user.url())
    with pytest.raises(DatabaseError) as exc:
        wait_for_database(engine, retry_seconds=30)
    assert str(exc.value).startswith("wrong user or password for postgresql+psycopg2://***@/")
    assert "wrong-pw" not in str(exc.value)


def test_missing_database_is_explained(pg_server: PgServer) -> None:
    """A database that does not exist is named, with what to do."""
    with pytest.raises(DatabaseError, match=r'database "nope" does not exist.*create it'):
        wait_for_database(create_engine(pg_server.url("nope")), retry_seconds=5)


def test_fuzzed_urls_never_leak_the_password_or_crash() -> None:
    """Hundreds of mangled URLs: each parses or gives one clean line, never the password."""
    import random

    rng = random.Random(1234)
    secret = "Zx9-s3cret"
    base = f"postgresql://alice:{secret}@127.0.0.1:5432/todo?sslmode=disable"
    junk = [*"@:/?#%&= \\'\"[]", "postgres://", "mysql", "\x00", "%2", "\n", "é"]
    for _ in range(3000):
        chars = list(base)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(chars) + 1)
            # Deletions spare the password and its '@': with no '@' left there is no
            # password part at all, just a (strange) host name.
            if rng.random() < 0.5 and pos < len(chars) and chars[pos] not in secret + "@":
                del chars[pos]
            else:
                chars.insert(pos, rng.choice(junk))
        raw = "".join(chars)
        try:
            url = parse_url(raw)
        except DatabaseError as exc:
            message = str(exc)
        else:
            message = explain(RuntimeError("Connection refused"), url)
        assert secret not in message, raw
        assert "\n" not in message, raw


SETTINGS = (
    "DB_CONNECT_RETRY_SECONDS",
    "DB_POOL_RECYCLE_SECONDS",
    "MIGRATION_LOCK_TIMEOUT_SECONDS",
    "MIGRATION_STATEMENT_TIMEOUT_SECONDS",
    "MIGRATION_LOCK_RETRIES",
    "MIGRATION_RETRY_PAUSE_SECONDS",
    "MIGRATION_LOCK_WAIT_SECONDS",
)


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "1e999", "NaN", "-1", "s3cret"])
def test_every_setting_refuses_non_finite_numbers_naming_only_the_variable(raw: str) -> None:
    """nan, inf (nan would lift the bound on the lock wait), negatives and words: one line
    naming the variable, the value never echoed."""
    for name in SETTINGS:
        with pytest.raises(DatabaseError) as bad:
            Settings.from_env({name: raw})
        message = str(bad.value)
        assert message.startswith(f"{name} ") and raw not in message and "\n" not in message


def test_a_port_that_is_not_a_number_is_one_line_in_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """?port=abc: one DatabaseError line from parse_url and from the app's get_engine (not
    SQLAlchemy's ArgumentError at the first connection), nothing echoed."""
    import models.db

    url = "postgresql://u:s3cret@db.example.com/db?port=abc"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setattr(models.db, "_engine", None)
    for attempt in (lambda: parse_url(url), models.db.get_engine):
        with pytest.raises(DatabaseError) as bad:
            attempt()
        assert str(bad.value) == f"DATABASE_URL has a port that is not a number: {URL_HINT}"


# Every `alembic upgrade head` failure case, run through alembic's own command line entry
# point (what the `alembic` script calls) in one process: a process per case cost ~0.5 s.
CLI_CASES = """
import contextlib, io, json, os, sys
from alembic.config import main

results = []
for env in json.loads(sys.argv[1]):
    for name in [n for n in os.environ if n.startswith("MIGRATION_")]:
        del os.environ[name]
    os.environ.update({"DATABASE_URL": "", "DATABASE_URL_UNPOOLED": "", **env})  # not .env's
    output, code = io.StringIO(), 0
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            main(argv=["upgrade", "head"])
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:
            output.write(f"Traceback: {type(exc).__name__}")
            code = 1
    results.append({"code": code, "output": output.getvalue()})
print(json.dumps(results))
"""


def test_alembic_cli_fails_with_one_line(pg_server: PgServer, password_user: PgServer) -> None:
    """`alembic upgrade head` with a bad URL, an unreachable server, a wrong password, a
    missing database, a port that is not a number, a lock wait of nan: exit non-zero, one
    FAILED line saying what to fix, no traceback, no password, nothing echoed."""
    cases = [
        ({"DATABASE_URL": "localhost/todo"}, "DATABASE_URL is not a valid database URL"),
        ({"DATABASE_URL": "mysql://u:s3cret@localhost/db"}, "unsupported scheme 'mysql'"),
        ({"DATABASE_URL": "postgresql://u:s3cret@127.0.0.1:9/db"}, "cannot reach PostgreSQL"),
        ({"DATABASE_URL": password_user.dsn()}, "wrong user or password"),
        (
            {"DATABASE_URL": pg_server.dsn("nope")},
            'database "nope" does not exist at postgresql+psycopg2://***@/',
        ),
        (
            {"DATABASE_URL": "postgresql://u:s3cret@db.example.com/db?port=abc"},
            "DATABASE_URL has a port that is not a number",
        ),
        ({"MIGRATION_LOCK_WAIT_SECONDS": "nan"}, "MIGRATION_LOCK_WAIT_SECONDS must be a finite"),
    ]
    env = {"DB_CONNECT_RETRY_SECONDS": "0.3"}
    done = run_python("-c", CLI_CASES, json.dumps([case for case, _ in cases]), env=env)
    assert done.returncode == 0, done.stderr
    for (case, expected), result in zip(cases, json.loads(done.stdout), strict=True):
        output = result["output"]
        assert result["code"] != 0, (case, output)
        assert "Traceback" not in output and "s3cret" not in output and "wrong-pw" not in output
        assert "abc" not in output and "=nan" not in output
        lines = [line for line in output.splitlines() if not line.startswith("INFO ")]
        assert len(lines) == 1 and lines[0].startswith("FAILED: "), (case, output)
        assert expected in lines[0], (case, lines[0])


def test_a_missing_role_is_not_named(pg_server: PgServer) -> None:
    """A user that is no role on the server: one line that does not quote it (safe_url masks
    the user part: in a mistyped URL it may hold part of the password)."""
    url = replace(pg_server, user="pw-fragment-s3cret").url()
    with pytest.raises(DatabaseError) as missing:
        wait_for_database(create_engine(url), retry_seconds=0)
    assert str(missing.value).startswith("the user in DATABASE_URL is not a role at ")
    assert "s3cret" not in str(missing.value)
