"""TLS authenticates the server by default (issue 18): a real TLS endpoint (PgBouncer with
client TLS, in front of the test server) whose certificate is for another host name, from
a root no system trusts, is refused unless the URL names that root and the right host,
or explicitly chooses sslmode=require."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import trustme
from sqlalchemy import text

from models.db import make_engine, parse_url, wait_for_database
from models.errors import DatabaseError
from models.security import APP_ROLE
from models.settings import Settings
from tests import pgbouncer as pgb
from tests.support import PgServer

SERVED_NAME = "db.example.test"  # the name in the endpoint's certificate
OTHER_NAME = "other.example.test"  # what the client asks for in the default case


@dataclass(frozen=True)
class TlsEndpoint:
    """A PgBouncer speaking TLS on 127.0.0.1:port, its root certificate in root_file."""

    port: int
    root_file: Path

    def dsn(self, host: str, **query: str) -> str:
        """A postgresql:// URL of the app role naming host (reached at 127.0.0.1)."""
        extra = "".join(f"&{key}={value}" for key, value in query.items())
        return f"postgresql://{APP_ROLE}@{host}:{self.port}/postgres?hostaddr=127.0.0.1{extra}"


@pytest.fixture(scope="module")
def tls_endpoint(
    pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsEndpoint]:
    """PgBouncer with client TLS required, its certificate for SERVED_NAME from a fresh
    self-signed root (trustme), logging in to the test server as the app role."""
    if pgb.binary() is None:
        pytest.skip(pgb.MISSING)
    workdir = tmp_path_factory.mktemp("tls")
    root = trustme.CA()
    served = root.issue_cert(SERVED_NAME)
    served.private_key_pem.write_to_path(str(workdir / "server.key"))
    served.cert_chain_pems[0].write_to_path(str(workdir / "server.crt"))
    root.cert_pem.write_to_path(str(workdir / "root.crt"))
    app_role = replace(pg_server, user=APP_ROLE, password=None)
    with pgb.running_pgbouncer(
        app_role,
        workdir,
        client_tls_sslmode="require",
        client_tls_key_file=str(workdir / "server.key"),
        client_tls_cert_file=str(workdir / "server.crt"),
    ) as bouncer:
        yield TlsEndpoint(bouncer.port, workdir / "root.crt")


def reached(dsn: str) -> str:
    """Connect with the app's engine: the user it runs as, or the one-line refusal."""
    engine = make_engine(parse_url(dsn), Settings())
    try:
        wait_for_database(engine, retry_seconds=0)
        with engine.connect() as conn:
            tls = conn.connection.dbapi_connection.info.ssl_in_use  # type: ignore[union-attr]
            return f"{conn.execute(text('SELECT current_user')).scalar_one()} (tls {tls})"
    except DatabaseError as exc:
        assert "\n" not in str(exc)
        return str(exc)
    finally:
        engine.dispose()


def test_by_default_an_unknown_root_for_another_host_is_refused(tls_endpoint: TlsEndpoint) -> None:
    """The default (verify-full, system roots) refuses the endpoint in one line; naming its
    root is not enough for another host name; root and the right name are accepted."""
    refused = reached(tls_endpoint.dsn(OTHER_NAME))
    assert refused.startswith("the server at postgresql+psycopg2://***@other.example.test:")
    assert "does not chain to a trusted root" in refused and "sslrootcert" in refused
    root = str(tls_endpoint.root_file)
    wrong_name = reached(tls_endpoint.dsn(OTHER_NAME, sslrootcert=root))
    assert "certificate is for another host name" in wrong_name
    assert reached(tls_endpoint.dsn(SERVED_NAME, sslrootcert=root)) == f"{APP_ROLE} (tls True)"


def test_an_explicit_sslmode_stays_the_users_choice(tls_endpoint: TlsEndpoint) -> None:
    """sslmode=require in the URL: encrypted, the server not authenticated, as written."""
    dsn = tls_endpoint.dsn(OTHER_NAME, sslmode="require")
    assert parse_url(dsn).query["sslmode"] == "require"
    assert reached(dsn) == f"{APP_ROLE} (tls True)"
