"""URL handling, the engine, sessions and connection errors: the one home of "how we connect"."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import PoolProxiedConnection, QueuePool

from models.errors import DatabaseError
from models.settings import Settings

if TYPE_CHECKING:
    from sqlmodel import Session

DRIVER = "postgresql+psycopg2"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
URL_HINT = "expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
log = logging.getLogger("models")
# libpq messages that mean "not there (yet)": worth retrying with backoff.
RETRYABLE = (
    "connection refused",
    "could not connect",
    "timeout expired",
    "could not translate host name",
    "no such file or directory",
    "the database system is starting up",
    "the database system is shutting down",
    "server closed the connection unexpectedly",
)
# SQLSTATEs of a connection that failed or went away (class 08, PgBouncer's errors
# included), or of a server shutting down or starting up.
CONNECTION_LOST = ("08", "57P01", "57P02", "57P03")
NEON_DOMAIN = ".neon.tech"
# libpq's refusal of a parameter's value ('invalid integer value "x" for connection option
# "port"', 'invalid sslmode value: "x"'): the option's name, never its value.
INVALID_OPTION = re.compile(
    r'invalid (?:integer )?value .* for connection option "(\w+)"|invalid (\w+) value:'
)


def safe_url(url: URL) -> str:
    """Show where a URL points, never its credentials: user and password become ***.

    Only scheme, host, port and database are shown: in a mistyped URL the user part or the
    query can hold (part of) the password.
    """
    socket = url.query.get("host")
    host = url.host or (socket if isinstance(socket, str) and socket.startswith("/") else "")
    auth = "***@" if url.username or url.password else ""
    port = f":{url.port}" if url.port else ""
    return f"{url.drivername}://{auth}{host}{port}/{url.database or ''}"


def parse_url(raw: str, name: str = "DATABASE_URL") -> URL:
    """Parse a URL: postgres:// and postgresql:// map to the driver; TLS required off-box."""
    raw = raw.strip()
    if any(ch.isspace() or not ch.isprintable() for ch in raw):
        raise DatabaseError(f"{name} contains spaces or control characters: {URL_HINT}")
    if raw.count("@") > 1:
        raise DatabaseError(f"{name} has more than one '@': percent-encode it (%40) in a password")
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        # The text may be anything, password included: never echo it back.
        raise DatabaseError(f"{name} is not a valid database URL: {URL_HINT}") from None
    # A stray '@', ':' or '/' moves (part of) the password into another part: refuse to
    # guess, and never echo it.
    for part, value in (("user", url.username), ("host", url.host), ("database", url.database)):
        if value and ("@" in value or (part != "host" and ":" in value)):
            raise DatabaseError(
                f"{name} is not a valid database URL (look at the {part} part; "
                f"percent-encode '@' and ':' in a password): {URL_HINT}"
            )
    if url.drivername not in ("postgres", "postgresql", DRIVER):
        raise DatabaseError(f"{name} has the unsupported scheme '{url.drivername}': {URL_HINT}")
    url = url.set(drivername=DRIVER)
    try:  # what the driver is handed: a port that is not a number fails here, not later
        url.get_dialect()().create_connect_args(url)
    except (ArgumentError, ValueError):
        raise DatabaseError(f"{name} has a port that is not a number: {URL_HINT}") from None
    if url.host and url.host not in LOCAL_HOSTS and "sslmode" not in url.query:
        url = url.update_query_dict(tls_defaults(url, name))
    return url


def tls_defaults(url: URL, name: str) -> dict[str, str]:
    """TLS that authenticates the server, for a URL that does not choose its sslmode:
    verify-full (the certificate chains to a trusted root and names this host) against the
    system's root certificates, unless the URL or libpq's own PGSSLROOTCERT or
    ~/.postgresql/root.crt names a root; on Neon, channel binding required too (elsewhere
    libpq's default: used when the server offers SCRAM-SHA-256-PLUS)."""
    query = {"sslmode": "verify-full"}
    own_root = os.environ.get("PGSSLROOTCERT") or (Path.home() / ".postgresql/root.crt").is_file()
    if "sslrootcert" not in url.query and not own_root:
        query["sslrootcert"] = system_roots(name)
    if (url.host or "").endswith(NEON_DOMAIN) and "channel_binding" not in url.query:
        query["channel_binding"] = "require"
    return query


def system_roots(name: str) -> str:
    """The file of the system's trusted root certificates (SSL_CERT_FILE if set), as Python's
    own OpenSSL finds it. libpq's `sslrootcert=system` is not used: the OpenSSL bundled in
    psycopg2-binary looks for them in its build directory, which no machine has."""
    import ssl  # here: only a remote host needs it

    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    raise DatabaseError(
        f"{name} points at a server whose certificate must be verified, and this machine "
        "has no system root certificates (install the ca-certificates package, or set "
        "SSL_CERT_FILE): or name the server's root with ?sslrootcert=/path/to/root.crt"
    )


def explain(exc: BaseException, url: URL) -> str:
    """Turn a driver error into one line that says what is wrong and what to check."""
    where = safe_url(url)
    message = str(getattr(exc, "orig", None) or exc).strip()
    low = message.lower()
    # libpq: 'connection to server at "h" (ip), port 5432 failed: FATAL:  <what>\n<hint>'
    first = message.splitlines()[0] if message else type(exc).__name__
    detail = re.sub(r"^connection to server .*? failed:\s*", "", first)
    detail = detail.removeprefix("FATAL:").strip()
    if "password authentication failed" in low or "no password supplied" in low:
        return f"wrong user or password for {where}: check the credentials in DATABASE_URL"
    if re.match(r'role ".*" does not exist', detail):
        # Not named: a mistyped URL's user part may hold (part of) the password.
        return f"the user in DATABASE_URL is not a role at {where}: fix the user name"
    if "database" in low and "does not exist" in low:
        return f"{detail} at {where}: create it, or fix the database name in DATABASE_URL"
    option = INVALID_OPTION.search(first)
    if option:  # libpq quotes the value: never echo it
        name = option.group(1) or option.group(2)
        return f"DATABASE_URL's {name} parameter has a value libpq refuses: fix it"
    if "root certificate file" in low:
        return "the root certificate file named by sslrootcert in DATABASE_URL cannot be read"
    if "certificate" in low or "ssl error" in low:
        return (
            f"the server at {where} failed TLS verification ({tls_reason(low)}): name its "
            "root certificate with ?sslrootcert=/path/to/root.crt in DATABASE_URL (the "
            "default is verify-full against the system's roots; docs/deploying.md)"
        )
    if any(marker in low for marker in RETRYABLE):
        return (
            f"cannot reach PostgreSQL at {where} ({detail}): check that the server is "
            "running and that the host and port in DATABASE_URL are right"
        )
    return f"cannot use PostgreSQL at {where}: {detail}"


def tls_reason(low: str) -> str:
    """What libpq said about the certificate, without quoting any name from it."""
    if "does not match host name" in low:
        return "its certificate is for another host name"
    if "certificate verify failed" in low:
        return "its certificate does not chain to a trusted root"
    return "TLS error"


def is_retryable(exc: BaseException) -> bool:
    """True for errors that mean the server is not reachable yet (not for a wrong password)."""
    low = str(getattr(exc, "orig", None) or exc).lower()
    return any(marker in low for marker in RETRYABLE)


def connect(engine: Engine, retry_seconds: float) -> Connection:
    """A connection, retrying an unreachable server with exponential backoff for retry_seconds.

    Any other failure (wrong password, missing database) is not retried. Both end in a
    DatabaseError with one line that says what to check.
    """
    deadline = time.monotonic() + retry_seconds
    delay = 0.1
    while True:
        try:
            return engine.connect()
        except DBAPIError as exc:
            left = deadline - time.monotonic()
            if not is_retryable(exc) or left <= 0:
                message = explain(exc, engine.url)
                if is_retryable(exc):
                    message += f" (gave up after {retry_seconds:g}s)"
                raise DatabaseError(message) from None
            time.sleep(min(delay, left))
            delay = min(delay * 2, 2.0)


def wait_for_database(engine: Engine, retry_seconds: float) -> None:
    """For the app's start-up: wait until the database answers, or fail with one line."""
    with connect(engine, retry_seconds) as conn:
        conn.execute(text("SELECT 1"))


def neon_direct(url: URL) -> URL | None:
    """The direct URL of a Neon pooled one, else None.

    Neon names its pooled host by adding `-pooler` to the endpoint id, the first label
    (ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech); dropping it gives the direct
    host of the same compute.
    """
    host = url.host or ""
    endpoint, dot, domain = host.partition(".")
    if not (endpoint.endswith("-pooler") and f"{dot}{domain}".endswith(NEON_DOMAIN)):
        return None
    return url.set(host=f"{endpoint.removesuffix('-pooler')}{dot}{domain}")


def resolve_url(settings: Settings, *, for_migrations: bool = False) -> URL:
    """The URL to use: the direct one for migrations when set, else DATABASE_URL, else local
    (as the server's superuser for migrations, as the app role for the app).

    Migrations never use Neon's pooled host: its direct twin is used instead, said in one line.
    """
    if for_migrations and settings.migration_url:
        url = parse_url(settings.migration_url, "DATABASE_URL_UNPOOLED")
    elif settings.database_url:
        url = parse_url(settings.database_url)
    else:
        from models.local import local_url

        return local_url(settings.local_pgdata, as_app=not for_migrations)
    direct = neon_direct(url) if for_migrations else None
    if direct is not None:
        log.info(
            "%s is Neon's pooled endpoint; migrating through its direct host %s instead "
            "(Neon's naming: the endpoint id without -pooler)",
            url.host,
            direct.host,
        )
        url = direct
    log.info("Using %s", safe_url(url))
    return url


def is_connection_error(exc: BaseException) -> bool:
    """True when a driver error means the connection failed or was lost (not a bad query)."""
    code = getattr(getattr(exc, "orig", None), "pgcode", None) or ""
    return isinstance(exc, OperationalError) and (not code or code.startswith(CONNECTION_LOST))


def _one_line_errors(context: ExceptionContext) -> BaseException | None:
    """The app engine's handle_error hook: an operational error (a failed or lost connection,
    a timeout, a cancelled statement, a deadlock) becomes a DatabaseError, whose one line
    carries no SQL and no values.

    A lost connection may have committed the statement that was in flight (the commit
    reached the server, its answer did not), so the line says so. Pre-ping failures are
    left to the pool, which reconnects.
    """
    exc = context.sqlalchemy_exception
    if context.is_pre_ping or exc is None:
        return None
    lost = context.is_disconnect or is_connection_error(exc)
    if not (lost or isinstance(exc, OperationalError)):
        return None
    message = explain(exc, context.engine.url) if context.engine else str(exc)
    if lost and context.connection is not None:
        message += " (the connection was lost mid-request: its last write may have committed)"
    return DatabaseError(message)


class AppPool(QueuePool):
    """The app's pool: waiting longer than pool_timeout for a connection is the one-line
    DatabaseError, not SQLAlchemy's TimeoutError."""

    def connect(self) -> PoolProxiedConnection:
        try:
            return super().connect()
        except PoolTimeout:
            raise DatabaseError(
                f"no free database connection after {self.timeout():g}s: all "
                f"{self.size() + max(self.overflow(), 0)} of the pool are in use (requests "
                "hold their sessions too long, or the pool is too small for the load)"
            ) from None


class FirstConnection:
    """The app engine's `connect` hook: on its first connection, refuse a role that
    row-level security cannot restrict (an admin engine says so in the log instead).

    Once per engine: later connections cost an attribute read.
    """

    def __init__(self, url: URL, admin: bool) -> None:
        self.url, self.admin, self.done = url, admin, False

    def __call__(self, dbapi_connection: Any, record: object) -> None:
        if self.done:
            return
        from models.security import APP_ROLE, why_unrestricted

        role, why = why_unrestricted(dbapi_connection)
        if why is not None and not self.admin:
            raise DatabaseError(
                f"the app will not connect as role {role} at {safe_url(self.url)}: {why}, so "
                f"row-level security does not restrict it; connect as the app role "
                f"{APP_ROLE} (DATABASE_URL), or build an admin engine for an owner's script"
            )
        if why is not None:
            log.warning(
                "admin engine: row-level security does not restrict role %s (%s)", role, why
            )
        self.done = True


def make_engine(
    url: URL, settings: Settings, *, admin: bool = False, **overrides: object
) -> Engine:
    """The app's engine: a pool of 5 plus 15 overflow, pre-ping, recycled before Neon drops it.

    Fails closed: its first connection refuses a role that row-level security does not
    restrict (superuser, BYPASSRLS, the tables' owner or a member of it, a reachable table
    without forced RLS), and every transaction sets its user ('' for none). Errors carry no
    parameters. admin=True is for the owner's own scripts (backfills, reports across
    users): no refusal, a warning in the log, no per-transaction user.
    """
    options: dict[str, object] = {
        "poolclass": AppPool,
        "pool_size": 5,
        "max_overflow": 15,
        "pool_pre_ping": True,
        "pool_recycle": settings.pool_recycle_seconds,
        "hide_parameters": True,
        "connect_args": {"connect_timeout": 5, "application_name": "todo-schema"},
    }
    options.update(overrides)
    engine = create_engine(url, **options)
    event.listen(engine, "handle_error", _one_line_errors)
    event.listen(engine, "connect", FirstConnection(engine.url, admin))
    if not admin:
        # Here, not at the top: models.security imports the ORM (~50 ms a deploy).
        from models.security import watch_transactions

        watch_transactions(engine)
    return engine


_engine: Engine | None = None
_engine_lock = threading.Lock()


def get_engine() -> Engine:
    """The process-wide engine for the app, built from the environment on first use.

    FastAPI runs sync routes in a thread pool, so the first requests ask for it from many
    threads at once: the lock makes exactly one of them build it (and start the embedded
    server); the others wait and share it.
    """
    global _engine
    engine = _engine
    if engine is None:
        with _engine_lock:
            if _engine is None:
                settings = Settings.from_env()
                _engine = make_engine(resolve_url(settings), settings)
            engine = _engine
    return engine


def get_session() -> Iterator[Session]:
    """A session per request; usable as a FastAPI dependency (`Depends(get_session)`)."""
    from sqlmodel import Session  # here, not at the top: see models/__init__.py

    with Session(get_engine()) as session:
        yield session
