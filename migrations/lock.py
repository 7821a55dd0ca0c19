"""The migration lock, bounded waits, and proof that a run is not behind a transaction pooler.

A migration run needs one server session: its advisory lock, its timeouts and its
revisions must reach the same PostgreSQL backend. A transaction pooler (PgBouncer with
pool_mode=transaction, Neon's `-pooler` host) hands every transaction any server
connection, so none of that holds there. This module refuses such a run, in one line:

- before the lock, with the lock held, and before each autocommit block, a second client
  connection asks for its backend: a pooler hands a lone client's last server connection
  to the next client (PgBouncer reuses the most recently used one first), so the same pid
  on two connections at once proves a pooler;
- when the lock is taken, the backend must not hold it already (session advisory locks
  are re-entrant: a pooled backend would let two runs "win" it);
- every later transaction of the run first checks that it is on the lock-holding backend
  (one pid comparison proves nothing, one per transaction does), and sets its timeouts
  with SET LOCAL, so they end with the transaction. Only Alembic's autocommit blocks
  (CREATE INDEX CONCURRENTLY) set them for the session; `release()` resets them.

A refused run frees its lock and resets its timeouts in one statement that acts only on
the lock's backend. Waiting for another run's lock has a deadline; on expiry the line
names the holder.
Revisions never import this module: it belongs to env.py.
"""

from __future__ import annotations

import logging
import time
from contextlib import suppress
from typing import Any

from sqlalchemy import Connection, event

from models.db import safe_url
from models.errors import DatabaseError

log = logging.getLogger("models")
# pg_advisory_lock key of "a migration run is in progress" (any fixed bigint will do).
LOCK_KEY = 7_301_955_211
# How pg_locks shows a bigint advisory key: high and low 32 bits, objsubid 1.
_HIGH, _LOW = divmod(LOCK_KEY, 2**32)
_OUR_LOCK = (
    f"l.locktype = 'advisory' AND l.classid = {_HIGH} AND l.objid = {_LOW} "
    "AND l.objsubid = 1 AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
HELD_HERE = f"EXISTS (SELECT 1 FROM pg_locks l WHERE {_OUR_LOCK} AND l.pid = pg_backend_pid())"
HOLDER = (
    "SELECT a.pid, a.application_name, a.client_addr, a.backend_start, a.state, "
    f"a.state_change FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE {_OUR_LOCK}"
)


# Through a pooler, how long a refused run keeps trying to reach its lock's backend to free it
# (with other runs busy on the pooler, 2 s sometimes ran out and left the lock behind).
FREE_PATIENCE = 10.0
# ...holding at most this many server sessions at once while it looks for the lock's (see
# MigrationLock._free_lock): fewer than any pool a pooler is configured with (PgBouncer's
# default_pool_size is 20), or the walk would wait for a session only it can release.
WALK = 4


class PoolerError(DatabaseError):
    """The run reached more than one server session: a transaction pooler is in between."""

    def before_any_change(self) -> PoolerError:
        return PoolerError(f"{self}; nothing was changed")


def pooled(connection: Connection, evidence: str) -> PoolerError:
    where = safe_url(connection.engine.url)
    return PoolerError(
        f"{where} goes through a transaction pooler ({evidence}): migrations need one server "
        "session; set DATABASE_URL_UNPOOLED to the direct URL (Neon: the host without "
        "-pooler) and deploy again"
    )


def _since(value: Any) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value is not None else "?"


def holder_line(connection: Connection, waited: float) -> str | None:
    """Who holds the migration lock, in one line with how to release it (None: nobody)."""
    row = connection.exec_driver_sql(HOLDER).first()
    if row is None:
        return None
    pid, app, addr, started, state, changed = row
    return (
        f"waited {waited:g}s (MIGRATION_LOCK_WAIT_SECONDS) for the migration lock, held by "
        f"backend pid {pid} (application_name '{app or ''}', client {addr or 'local socket'}, "
        f"connected since {_since(started)}, {state} since {_since(changed)}): if that deploy "
        "is still running, let it finish; if it died (e.g. a pooler's server connection kept "
        f"its lock), release it with SELECT pg_terminate_backend({pid}) on the direct URL"
    )


def _wait(conn: Connection, deadline: float, wait_seconds: float, pause: float) -> float:
    """One pause of the wait for the lock (or the line naming its holder at the deadline).

    Outside a transaction of its own when the connection has none: an open transaction
    would hold up a CREATE INDEX CONCURRENTLY in the lock holder.
    """
    left = deadline - time.monotonic()
    if left <= 0:
        if conn.in_transaction():
            line = holder_line(conn, wait_seconds)
        else:
            with conn.begin():
                line = holder_line(conn, wait_seconds)
        if line is not None:
            raise DatabaseError(line)
    if pause == 0.05:
        log.info(
            "Another migration run holds the lock; waiting for it (at most %gs).", wait_seconds
        )
    time.sleep(max(0.0, min(pause, left)))
    return min(pause * 2, 1.0)


def _reset(name: str) -> str:
    """SQL that resets a setting for the session, as an expression (RESET is a statement)."""
    return f"set_config('{name}', (SELECT reset_val FROM pg_settings WHERE name = '{name}'), false)"


class MigrationLock:
    """The run's session: its advisory lock, its backend, its timeouts (see the module doc)."""

    def __init__(self, connection: Connection, timeouts: dict[str, str]) -> None:
        self.connection = connection
        self.timeouts = timeouts  # setting -> value, e.g. {"lock_timeout": "5000ms"}
        self.pid: int | None = None
        # The second client connection of the checks, opened once: a new connection per
        # check cost ~3 ms (a backend fork), ~20 times a run.
        self._probe: Connection | None = None
        self._single = False  # the caller's pool has one connection: nothing to probe
        # Each transaction's first statement (see _on_begin): its backend, and on the lock's
        # backend only, the timeouts: SET LOCAL in a transaction, SET SESSION in an
        # autocommit block (release() resets them).
        sets = " AND ".join(
            f"set_config('{name}', '{value}', %(local)s) IS NOT NULL"
            for name, value in timeouts.items()
        )
        self._begin = (
            "SELECT pg_backend_pid(), "
            f"CASE WHEN pg_backend_pid() = %(pid)s THEN {sets or 'true'} END"
        )
        # One statement, so it runs on one backend even through a pooler: on the lock's
        # backend (and only there), reset the timeouts and unlock. True: freed. (Ending that
        # backend instead would fail the app request a pooler hands it at that moment.)
        resets = " AND ".join(f"{_reset(name)} IS NOT NULL" for name in timeouts)
        self._free = (
            f"SELECT CASE WHEN pg_backend_pid() = %(pid)s THEN {resets or 'true'} "
            f"AND pg_advisory_unlock({LOCK_KEY}) ELSE false END"
        )

    def acquire(self, wait_seconds: float) -> None:
        """Prove there is no pooler, take the lock, and prove it again with the lock held
        (a run left alone by a crowd of pooled runs is caught then)."""
        try:
            self.prove_one_session()
            self.take(wait_seconds)
            assert self.pid is not None
            if self._shared(self.pid):
                evidence = f"a second connection was handed this run's session {self.pid}"
                raise self._abandon(evidence).before_any_change()
        except BaseException:
            self._close_probe()
            raise

    def _shared(self, mine: int) -> bool:
        """Is the second client connection's next transaction handed the server session `mine`?

        Through a transaction pooler a client holds a server connection only during a
        transaction, so the probe's next one is assigned as a new client's would be."""
        conn = self.connection
        if self._single:
            return False
        if self._probe is None:
            self._probe = conn.engine.connect()
            if self._probe.connection.dbapi_connection is conn.connection.dbapi_connection:
                self._single = True  # a caller's single-connection pool: one client
                self._close_probe()
                return False
        probe = self._probe
        with probe.begin():
            other: int = probe.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        return other == mine

    def _close_probe(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    def prove_one_session(self) -> None:
        """Refuse when a second connection is handed this one's server session (a pooler)."""
        conn = self.connection
        with conn.begin():
            mine = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        if self._shared(mine):
            raise pooled(
                conn, f"two connections were handed the same server session, pid {mine}"
            ).before_any_change()

    def take(self, wait_seconds: float) -> None:
        """Take the lock, polling until `wait_seconds`; then guard every later transaction.

        Polling, not a blocking pg_advisory_lock(): a session blocked in it sits in an open
        statement, which a CREATE INDEX CONCURRENTLY in the lock holder would wait for.
        """
        conn = self.connection
        deadline = time.monotonic() + wait_seconds
        pause = 0.05
        while True:
            with conn.begin():
                pid, held = conn.exec_driver_sql(f"SELECT pg_backend_pid(), {HELD_HERE}").one()
                if held:
                    raise pooled(
                        conn, f"server session {pid} already held the migration lock"
                    ).before_any_change()
                taken = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({LOCK_KEY})").scalar()
            if taken:
                self.pid = pid
                event.listen(conn, "begin", self._on_begin)
                return
            pause = _wait(conn, deadline, wait_seconds, pause)

    def join(self, wait_seconds: float) -> None:
        """Join a caller's open transaction (never commit it): a transaction-level lock and
        SET LOCAL timeouts, both ending with that transaction, so no pooler can split them."""
        conn = self.connection
        deadline = time.monotonic() + wait_seconds
        pause = 0.05
        while not conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({LOCK_KEY})").scalar():
            pause = _wait(conn, deadline, wait_seconds, pause)
        for name, value in self.timeouts.items():
            conn.exec_driver_sql(f"SET LOCAL {name} = '{value}'")

    def _on_begin(self, conn: Connection) -> None:
        """First in every transaction: on the lock's backend? Then this transaction's timeouts.

        One statement reads the backend and, on the lock's backend only, sets the timeouts:
        through a pooler, two statements of an autocommit block (CONCURRENTLY runs statement
        by statement) may reach two backends, and a setting must not be left on another.
        Before such a block, a second connection must again get another session.
        """
        raw: Any = conn.connection.dbapi_connection
        with raw.cursor() as cursor:
            cursor.execute(self._begin, {"pid": self.pid, "local": not raw.autocommit})
            pid = cursor.fetchone()[0]
        if pid != self.pid:
            raw.rollback()
            raise self._abandon(
                f"this run's transactions reached server sessions {self.pid} and {pid}"
            )
        if raw.autocommit and self._shared(pid):
            raise self._abandon(f"a second connection was handed this run's session {pid}")

    def _free_lock(self, patience: float = 0.0) -> bool:
        """Run the one-statement clean-up (see __init__) on whatever backend we get; through a
        pooler, again for up to `patience` seconds until it lands on the lock's backend.

        A pooler hands a client the server connection released last, which is the one this
        run just used: retrying alone never reaches the lock's. So each wrong session is
        held in an open transaction while another client connection asks (at most WALK at
        once), walking down the pooler's idle list to the lock's backend.
        """
        raw: Any = self.connection.connection.dbapi_connection
        deadline = time.monotonic() + patience
        while True:
            extra: list[Any] = []
            freed: bool | None
            try:
                freed = self._free_on(raw)
                while not freed and patience and len(extra) < WALK - 1 and not self._single:
                    extra.append(self.connection.engine.raw_connection())
                    freed = self._free_on(extra[-1])
            except Exception:  # e.g. the connection is gone: the line says how to release it
                freed = None
            finally:
                for held in (raw, *extra):
                    with suppress(Exception):
                        held.rollback()  # after the freeing commit: nothing to roll back
                for held in extra:
                    with suppress(Exception):
                        held.close()
            if freed is None:
                return False
            if freed or time.monotonic() > deadline:
                return freed
            time.sleep(0.01)

    def _free_on(self, raw: Any) -> bool:
        """The clean-up statement on raw's server session, committed if that was the lock's
        backend; otherwise raw's transaction stays open, holding that session."""
        with raw.cursor() as cursor:
            cursor.execute(self._free, {"pid": self.pid})
            row = cursor.fetchone()
        if row and row[0]:
            raw.commit()
            return True
        return False

    def _abandon(self, evidence: str) -> PoolerError:
        """A pooler is in between: stop, free the lock and the session's settings, say so."""
        event.remove(self.connection, "begin", self._on_begin)
        self._close_probe()
        held_by = self.pid
        freed = self._free_lock(patience=FREE_PATIENCE)
        left = "" if freed else f"; release its lock: SELECT pg_terminate_backend({held_by})"
        self.pid = None
        return pooled(self.connection, f"{evidence}{left}")

    def release(self) -> None:
        """At the end of the run: reset the session's timeouts and unlock (see __init__)."""
        self._close_probe()
        if self.pid is None:
            return
        event.remove(self.connection, "begin", self._on_begin)
        self._free_lock()
        self.pid = None
