"""10. The command line builds what the checks build: the schema of a real
`alembic upgrade head` process (as a deploy runs it: the direct URL in
DATABASE_URL_UNPOOLED, no models imported) equals, byte for byte in pg_dump, the schema
the in-process checks build. Any shortcut the checks take (another import path, naming
convention or connection) that changes the DDL shows up here."""

from __future__ import annotations

import configparser
import tempfile
from pathlib import Path

from alembic.config import Config

from tests.checks.common import SchemaCheckError, alembic_step, bound, diff, schema_ddl
from tests.support import ROOT, PgServer, run_alembic


def cli_ini(cfg: Config, directory: Path) -> Path:
    """An alembic.ini for the command line with cfg's script and version locations."""
    source = Path(cfg.config_file_name or ROOT / "alembic.ini")
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(source.read_text().replace("%(here)s", str(source.parent)))
    for option in ("script_location", "version_locations"):
        value = cfg.get_main_option(option)
        if value:
            parser["alembic"][option] = value.replace("%", "%%")
    ini = directory / "alembic.ini"
    with ini.open("w") as out:
        parser.write(out)
    return ini


def check_cli_matches_checks(cfg: Config, server: PgServer) -> None:
    """10. `alembic upgrade head` as a process builds the schema the checks build."""
    with server.database("in_process") as in_process, server.database("cli") as cli:
        with bound(cfg, server, in_process):
            alembic_step(cfg, "head")
        with tempfile.TemporaryDirectory(prefix="cli-") as tmp:
            url = server.dsn(cli)
            done = run_alembic(
                "-c",
                str(cli_ini(cfg, Path(tmp))),
                "upgrade",
                "head",
                env={"DATABASE_URL_UNPOOLED": url, "DATABASE_URL": url},
                cold=True,  # a new interpreter, exactly as a deploy starts (tests/zygote.py)
            )
        if done.returncode != 0:
            failed = [line for line in done.stderr.splitlines() if line.startswith("FAILED")]
            raise SchemaCheckError(
                "`alembic upgrade head` on the command line failed where the checks' "
                f"in-process upgrade passed: {(failed or [done.stderr.strip()])[-1]}"
            )
        want, got = schema_ddl(server, in_process), schema_ddl(server, cli)
    if want != got:
        raise SchemaCheckError(
            "The command line builds another schema than the checks: a deploy would get "
            "DDL that CI never verified (names from another naming convention, other "
            "operations). Make env.py give every upgrade the same metadata.\n"
            + diff(want, got, "in-process (the checks)", "alembic upgrade head (command line)")
        )
