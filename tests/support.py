"""Helpers shared by the tests: the throwaway server, databases, alembic, subprocesses."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from psycopg import sql
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import URL, Connection, Engine, create_engine, pool
from sqlalchemy.engine import make_url

from models.db import DRIVER
from models.local import start_server
from models.security import create_app_role
from models.settings import Settings
from tests import zygote

ROOT = Path(__file__).resolve().parent.parent
_names = itertools.count(1)


@dataclass(frozen=True)
class PgServer:
    """A running PostgreSQL reachable through a Unix socket directory (or host) and port."""

    host: str
    port: int
    user: str = "postgres"
    password: str | None = None
    # The database every new one copies (CREATE DATABASE ... TEMPLATE), like a server whose
    # template1 holds other tools' tables; None: template1.
    template: str | None = None

    def url(self, dbname: str = "postgres", **query: str) -> URL:
        """The SQLAlchemy URL of one database on this server."""
        return URL.create(
            DRIVER,
            username=self.user,
            password=self.password,
            database=dbname,
            query={"host": self.host if self.port == 5432 else f"{self.host}:{self.port}", **query},
        )

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq URL (for psql, pg_dump, subprocesses and DATABASE_URL)."""
        # host and port as two parameters: libpq, unlike SQLAlchemy, reads no port in host.
        query = {"host": self.host, "port": str(self.port)}
        url = URL.create("postgresql", self.user, self.password, database=dbname, query=query)
        return url.render_as_string(False)

    @contextmanager
    def database(self, prefix: str = "t", template: str | None = None) -> Iterator[str]:
        """A new empty database (or a copy of template), dropped afterwards."""
        name = f"{prefix}_{os.getpid()}_{next(_names)}"
        janitor = FileCopyJanitor(
            user=self.user,
            host=self.host,
            port=self.port,
            dbname=name,
            template_dbname=template or self.template,
            password=self.password,
        )
        with janitor:
            yield name


class FileCopyJanitor(DatabaseJanitor):
    """pytest-postgresql's janitor, creating with STRATEGY FILE_COPY: PostgreSQL's default
    (WAL_LOG) writes every page of the template into the WAL, 21 ms a database here against
    8 ms for a file copy (and its drop 9 ms against 4), for the ~220 databases of a run.
    Its statements go through one maintenance connection per server and process, not two
    new connections per database."""

    @contextmanager
    def cursor(self, dbname: str | None = None) -> Iterator[psycopg.Cursor[Any]]:
        if dbname not in (None, self.maintenance_dbname):
            with super().cursor(dbname) as cur:
                yield cur
            return
        key = (self.host, str(self.port), self.user, self.password, self.maintenance_dbname)
        with _ADMIN_LOCK:
            conn = _ADMIN.get(key)
            if conn is None or conn.closed:
                conn = _ADMIN[key] = psycopg.connect(
                    dbname=self.maintenance_dbname,
                    user=self.user,
                    password=self.password,
                    host=self.host,
                    port=self.port,
                    autocommit=True,
                )
            with conn.cursor() as cur:
                yield cur

    def init(self) -> None:
        with self.cursor() as cur:
            if self.template_dbname:  # nobody may stay connected to a template being copied
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.template_dbname,),
                )
            template = (
                sql.SQL(" TEMPLATE {}").format(sql.Identifier(self.template_dbname))
                if self.template_dbname
                else sql.SQL("")
            )
            cur.execute(
                sql.SQL("CREATE DATABASE {}{} STRATEGY FILE_COPY").format(
                    sql.Identifier(self.dbname), template
                )
            )


_ADMIN: dict[tuple[str, str, str, str | None, str], psycopg.Connection[Any]] = {}
_ADMIN_LOCK = threading.RLock()

# The advisory locks held in the connection's own database (a lock key is per database;
# other tests' databases on the same server hold theirs, or are releasing them).
ADVISORY_HERE = (
    "locktype = 'advisory' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def alembic_config(
    connection: Connection | Engine | None = None,
    settings: Settings | None = None,
    **options: str,
) -> Config:
    """The project's alembic.ini, optionally bound to a connection or engine (no logging setup)."""
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["configure_logger"] = False
    if connection is not None:
        cfg.attributes["connection"] = connection
    if settings is not None:
        cfg.attributes["settings"] = settings
    for key, value in options.items():
        cfg.set_main_option(key, value)
    return cfg


def head() -> str:
    """The project's head revision."""
    found = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert found is not None
    return found


def revision(
    rev: str,
    down: str | None,
    upgrade: str,
    downgrade: str = "pass",
    imports: str = "",
    module: str = "",
) -> str:
    """The source of a test-only revision file (module: extra module-level code)."""
    body = textwrap.indent(textwrap.dedent(upgrade).strip(), "    ")
    down_body = textwrap.indent(textwrap.dedent(downgrade).strip(), "    ")
    return (
        f'"""Test only: revision {rev}."""\n\nimport sqlalchemy as sa\nfrom alembic import op\n'
        f"{imports}\n\nrevision = {rev!r}\ndown_revision = {down!r}\n"
        f"branch_labels = None\ndepends_on = None\n{textwrap.dedent(module)}\n\n"
        f"def upgrade() -> None:\n{body}\n\n\ndef downgrade() -> None:\n{down_body}\n"
    )


def extra_versions(tmp_path: Path, **files: str) -> str:
    """version_locations: the project's revisions plus test-only files (name -> source)."""
    versions = tmp_path / "versions"
    versions.mkdir()
    for name, source in files.items():
        (versions / f"{name}.py").write_text(source)
    return f"{ROOT / 'migrations' / 'versions'}{os.pathsep}{versions}"


def with_revisions(tmp_path: Path, **files: str) -> Config:
    """The project's alembic configuration with test-only revisions on top (see extra_versions)."""
    return alembic_config(version_locations=extra_versions(tmp_path, **files))


def migrate(
    url: URL,
    target: str = "head",
    *,
    down: bool = False,
    settings: Settings | None = None,
    allow_data_loss: bool = False,
    **options: str,
) -> None:
    """Run alembic upgrade (or downgrade) to target on the database at url.

    A downgrade that would drop rows or values refuses unless allow_data_loss is set
    (`alembic -x allow-data-loss=true downgrade ...` on the command line).
    """
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            cfg = alembic_config(conn, settings, **options)
            cfg.attributes["allow_data_loss"] = allow_data_loss
            (command.downgrade if down else command.upgrade)(cfg, target)
    finally:
        engine.dispose()


PROJECT_VARIABLES = ("DATABASE_URL", "DB_", "MIGRATION_", "LOCAL_PGDATA")


def clean_env(env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with the project's variables cleared, then env set.

    The URLs are set empty rather than left out, so that a developer's .env cannot fill them.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(PROJECT_VARIABLES)}
    # Compiled modules, as a deploy has them: with PYTHONDONTWRITEBYTECODE (set on some CI
    # machines) each process compiled env.py, the revisions and models/ again (+60 ms).
    full_env.pop("PYTHONDONTWRITEBYTECODE", None)
    return {**full_env, "DATABASE_URL": "", "DATABASE_URL_UNPOOLED": "", **env}


def run_python(
    *args: str, env: Mapping[str, str], timeout: float = 60, cold: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `python *args` in the project root, in clean_env(env): a process forked by the
    test zygote (tests/zygote.py: SQLAlchemy, Alembic and psycopg2 already imported, nothing
    of the project), or with cold=True a new interpreter from scratch."""
    if not cold:
        return zygote.run(args, env=clean_env(env), cwd=ROOT, timeout=timeout)
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_alembic(
    *args: str, env: Mapping[str, str], timeout: float = 60, cold: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the real `alembic` command line (`python -m alembic`) in the project root, as a
    deploy would (cold=True: from a new interpreter, imports included)."""
    return run_python("-m", "alembic", *args, env=env, timeout=timeout, cold=cold)


def deploys(count: int, env: Mapping[str, str]) -> list[zygote.Child | subprocess.Popen[str]]:
    """Start `count` real `alembic upgrade head` processes at once (output: stdout, merged)."""
    return [
        zygote.start(
            ["-m", "alembic", "upgrade", "head"],
            env=clean_env(env),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(count)
    ]


@contextmanager
def open_server(workdir: Path, *, durable: bool = True) -> Iterator[PgServer]:
    """TEST_DATABASE_URL's server if set, else a throwaway embedded one (data in workdir;
    not durable: see embedded_server)."""
    given = os.environ.get("TEST_DATABASE_URL", "").strip()
    if given:
        url = make_url(given)
        host = url.host or str(url.query.get("host", "/tmp"))
        port = url.port or int(str(url.query.get("port", 5432)))
        server = PgServer(host, port, url.username or "postgres", url.password)
        with_app_role(server)
        yield server
        return
    with embedded_server(workdir, durable=durable) as server:
        yield server


def with_app_role(server: PgServer) -> None:
    """Create the app role on the server (the migrations require it; docs/security.md)."""
    engine = create_engine(server.url(), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            create_app_role(conn)
    finally:
        engine.dispose()


# A server whose data is deleted afterwards needs no crash safety: without these, each
# CREATE/DROP DATABASE waits for its fsyncs (0.36 s -> 0.12 s a database, ~half the suite).
NOT_DURABLE = ("fsync", "synchronous_commit", "full_page_writes")
# ...nor a disk: on a disk that many runs have filled and emptied, ext4 spends ~0.2 s of CPU
# finding free inodes for each CREATE DATABASE's ~300 files; in memory it takes 0.02 s.
TMPFS = Path("/dev/shm")
TMPFS_MIN_FREE = 1 << 30


@contextmanager
def in_memory(workdir: Path) -> Iterator[Path]:
    """A fresh folder in the tmpfs, deleted afterwards, when there is one with room (1 GiB);
    else workdir itself."""
    try:
        stat = os.statvfs(TMPFS)
        roomy = stat.f_bavail * stat.f_frsize >= TMPFS_MIN_FREE and os.access(TMPFS, os.W_OK)
    except OSError:
        roomy = False
    if not roomy:
        yield workdir
        return
    home = Path(tempfile.mkdtemp(prefix="todo-schema-", dir=TMPFS))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def embedded_server(workdir: Path, *, durable: bool = True) -> Iterator[PgServer]:
    """A throwaway embedded PostgreSQL with its data in workdir, stopped and deleted after.

    durable=False switches off fsync and friends, and keeps the data in memory where it
    can (the tests; not the benchmarks, whose figures must be those of a normally
    configured server)."""
    # Keep workdir short: Unix socket paths are limited to about 100 characters.
    with nullcontext(workdir) if durable else in_memory(workdir) as home:
        server = start_server(home / "data", cleanup_mode="delete")
        try:
            info = server.get_postmaster_info()
            found = PgServer(str(info.socket_dir), info.port or 5432)
            if not durable:
                engine = create_engine(found.url(), isolation_level="AUTOCOMMIT")
                with engine.connect() as conn:
                    for setting in NOT_DURABLE:
                        conn.exec_driver_sql(f"ALTER SYSTEM SET {setting} = off")
                    conn.exec_driver_sql("SELECT pg_reload_conf()")
                engine.dispose()
            with_app_role(found)
            yield found
        finally:
            server.cleanup()


# Two users' committed rows: alice 2, bob 1 (the isolation tests' seed).
SEED = {"alice": 2, "bob": 1}


@contextmanager
def seeded_copy(server: PgServer, template: str, label: str) -> Iterator[str]:
    """A copy of template (a database at head) holding SEED's tasks, titled "<user> <i>"."""
    with server.database(label, template=template) as name:
        with psycopg.connect(server.dsn(name), autocommit=True) as conn:
            for user, count in SEED.items():
                for i in range(count):
                    conn.execute(
                        "INSERT INTO tasks (user_id, title) VALUES (%s, %s)", (user, f"{user} {i}")
                    )
        yield name
