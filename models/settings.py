"""The one place that reads the environment (and `.env`): every knob of the project."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import load_dotenv

from models.errors import DatabaseError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    """A finite, non-negative number from env, or one line naming the variable (its value is
    never echoed: a misplaced line of .env may hold a secret). nan and inf are refused: nan
    compares false with every bound (a lock wait of nan never ends), inf never ends either."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise DatabaseError(f"{name} is not a number; fix it in .env") from None
    if not math.isfinite(value) or value < 0:
        raise DatabaseError(f"{name} must be a finite number, 0 or more; fix it in .env")
    return value


@dataclass(frozen=True)
class Settings:
    """Connection and migration settings, read once from the environment."""

    # The app's URL (Neon: the pooled endpoint). None: use the embedded local PostgreSQL.
    database_url: str | None = None
    # The direct (unpooled) URL for migrations; falls back to database_url.
    migration_url: str | None = None
    # How long to keep retrying an unreachable server, with exponential backoff.
    connect_retry_seconds: float = 15.0
    # Recycle pooled connections before a serverless server drops idle ones (Neon: 5 min).
    pool_recycle_seconds: float = 240.0
    # Every migration runs with these, so it gives up instead of queueing the app behind it.
    lock_timeout_seconds: float = 5.0
    statement_timeout_seconds: float = 60.0
    # How often a migration that hit lock_timeout is tried again, and the first pause
    # between tries (it doubles each time, up to 10 s).
    migration_lock_retries: int = 3
    migration_retry_pause_seconds: float = 0.5
    # How long a deploy waits for another deploy's migration lock before it gives up and
    # names the holder.
    migration_lock_wait_seconds: float = 300.0
    # Where the embedded PostgreSQL keeps its data when no DATABASE_URL is set.
    local_pgdata: Path = PROJECT_ROOT / ".pgdata"
    # The key of the list's cursors (models/cursor.py); None: derived from the database URL.
    cursor_secret: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: os.environ after loading `.env`)."""
        if env is None:
            load_dotenv(PROJECT_ROOT / ".env", override=False)
            env = os.environ
        pgdata = env.get("LOCAL_PGDATA", "").strip()
        local = Path(pgdata).expanduser().resolve() if pgdata else PROJECT_ROOT / ".pgdata"
        return cls(
            database_url=env.get("DATABASE_URL", "").strip() or None,
            migration_url=env.get("DATABASE_URL_UNPOOLED", "").strip() or None,
            connect_retry_seconds=_float(env, "DB_CONNECT_RETRY_SECONDS", 15.0),
            pool_recycle_seconds=_float(env, "DB_POOL_RECYCLE_SECONDS", 240.0),
            lock_timeout_seconds=_float(env, "MIGRATION_LOCK_TIMEOUT_SECONDS", 5.0),
            statement_timeout_seconds=_float(env, "MIGRATION_STATEMENT_TIMEOUT_SECONDS", 60.0),
            migration_lock_retries=int(_float(env, "MIGRATION_LOCK_RETRIES", 3)),
            migration_retry_pause_seconds=_float(env, "MIGRATION_RETRY_PAUSE_SECONDS", 0.5),
            migration_lock_wait_seconds=_float(env, "MIGRATION_LOCK_WAIT_SECONDS", 300.0),
            local_pgdata=local,
            cursor_secret=env.get("CURSOR_SECRET", "").strip() or None,
        )
