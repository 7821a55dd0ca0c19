"""The migration lock, bounded waits, and proof that a run is not behind a transaction pooler.

A migration run needs one server session: its advisory lock, its timeouts and its
revisions must reach the same PostgreSQL backend. A transaction pooler (PgBouncer with
pool_mode=transaction, Neon's `-pooler` host) hands every transaction any server
connection, so none of that holds there. This module refuses such a run, in one line:

- before the lock, a second client connection asks for its backend: a pooler hands a
  lone client's last server connection to the next client (PgBouncer reuses the most
  recently used one first), so the same pid on two connections at once proves a pooler;
- when the lock is taken, the backend must not hold it already (session advisory locks
  are re-entrant: a pooled backend would let two runs "win" it);
- every later transaction of the run first checks that it is on the lock-holding backend
  (one pid comparison proves nothing, one per transaction does), and sets its timeouts
  with SET LOCAL, so they end with the transaction. Only Alembic's autocommit blocks
  (CREATE INDEX CONCURRENTLY) set them for the session; `release()` resets them.

Waiting for another run's lock has a deadline; on expiry the line names the holder.
Revisions never import this module: it belongs to env.py.
"""

from __future__ import annotations

import logging
import time
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


class PoolerError(DatabaseError):
    """The run reached more than one server session: a transaction pooler is in between."""


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


class MigrationLock:
    """The run's session: its advisory lock, its backend, its timeouts (see the module doc)."""

    def __init__(self, connection: Connection, timeouts: dict[str, str]) -> None:
        self.connection = connection
        self.timeouts = timeouts  # setting -> value, e.g. {"lock_timeout": "5000ms"}
        self.pid: int | None = None

    def acquire(self, wait_seconds: float) -> None:
        """Prove there is no pooler, then take the lock (see `take`)."""
        self.prove_one_session()
        self.take(wait_seconds)

    def prove_one_session(self) -> None:
        """Refuse when a second connection is handed this one's server session (a pooler)."""
        conn = self.connection
        with conn.begin():
            mine = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with conn.engine.connect() as probe, probe.begin():
            other = probe.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        if other == mine:
            raise pooled(conn, f"two connections were handed the same server session, pid {mine}")

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
                    raise pooled(conn, f"server session {pid} already held the migration lock")
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
        """First in every transaction: on the lock's backend? Then this transaction's timeouts."""
        raw: Any = conn.connection.dbapi_connection
        cursor = raw.cursor()
        try:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
            if pid != self.pid:
                raw.rollback()
                raise self._switched(pid)
            scope = "SESSION" if raw.autocommit else "LOCAL"
            for name, value in self.timeouts.items():
                cursor.execute(f"SET {scope} {name} = '{value}'")
        finally:
            cursor.close()

    def _switched(self, pid: int) -> PoolerError:
        """The run left its backend: end that backend if idle (freeing its lock), and say so."""
        held_by, self.pid = self.pid, None
        event.remove(self.connection, "begin", self._on_begin)
        raw: Any = self.connection.connection.dbapi_connection
        cursor = raw.cursor()
        try:
            cursor.execute(
                "SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a JOIN pg_locks l "
                f"ON l.pid = a.pid WHERE a.pid = %s AND a.state = 'idle' AND {_OUR_LOCK}",
                (held_by,),
            )
            freed = cursor.fetchone() is not None
            raw.commit()
        finally:
            cursor.close()
        left = (
            f"its lock was freed by ending that idle server connection {held_by}"
            if freed
            else f"release its lock with SELECT pg_terminate_backend({held_by})"
        )
        return pooled(
            self.connection,
            f"this run's transactions reached server sessions {held_by} and {pid}; {left}",
        )

    def release(self) -> None:
        """Reset the session's timeouts and unlock, on the lock's backend (never elsewhere)."""
        if self.pid is None:
            return
        conn = self.connection
        event.remove(conn, "begin", self._on_begin)
        with conn.begin():
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            if pid != self.pid:  # reported by the run's own check; never unlock elsewhere
                return
            for name in self.timeouts:
                conn.exec_driver_sql(f"RESET {name}")
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({LOCK_KEY})")
        self.pid = None
