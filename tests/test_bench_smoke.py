"""The benchmarks (bench/, `python -m bench`) run end to end at tiny sizes, so they cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import (
    chain,
    contract,
    deploy,
    failclosed,
    isolation,
    listing,
    online,
    pooler,
    rls,
    suite,
)
from bench.harness import SMOKE, Sizes
from tests import pgbouncer as pgb
from tests.support import PgServer

TINY_SUITE = """
import pytest

@pytest.fixture(scope="session")
def pg_server():
    yield "server"

@pytest.fixture(scope="session")
def engine(pg_server):
    yield "engine"

def test_uses_both(engine):
    assert engine == "engine"
"""


def test_suite_benchmark_splits_a_pytest_run(tmp_path: Path) -> None:
    """1: a pytest run (here a tiny one) is split into its phases, which add up to the total."""
    (tmp_path / "test_tiny.py").write_text(TINY_SUITE)
    tiny = (str(tmp_path / "test_tiny.py"), "-p", "no:pytest_alembic", "-n", "0")
    table = suite.run(SMOKE, tiny)
    assert [row[0] for row in table.rows[:-2]] == list(suite.PHASES.values())
    parts = sum(float(row[1]) for row in table.rows[:-2])
    assert abs(parts - float(table.rows[-2][1].strip("*"))) < 0.05
    assert float(table.rows[-1][1].strip("*")) > 0


def test_isolation_benchmark_compares_three_strategies(pg_server: PgServer) -> None:
    """2: rollback, template clone and create_all are each timed, with a ratio to ours."""
    table = isolation.run(pg_server, SMOKE)
    assert len(table.rows) == 3 and table.rows[0][-1] == "1.00x"


def test_deploy_benchmark_runs_alembic_and_both_floors(pg_server: PgServer) -> None:
    """3: `alembic upgrade head`, psql -f of its offline SQL and the bare imports all run."""
    table = deploy.run(pg_server, SMOKE)
    assert len(table.rows) == 3 and all(row[-1].endswith("x") for row in table.rows)


def test_listing_benchmark_measures_before_and_after_the_index(pg_server: PgServer) -> None:
    """4: list_tasks on COPY-loaded rows at 0001, at head (and tuned), with its EXPLAIN plan."""
    table = listing.run(pg_server, SMOKE)
    assert {row[3] for row in table.rows} == {"0001", "head", listing.SSD}
    assert all(row[4].startswith("Limit") for row in table.rows)


def test_online_benchmark_records_every_writers_stall(pg_server: PgServer) -> None:
    """5: writers run through `alembic upgrade 0002` and a plain CREATE INDEX; stalls recorded."""
    table = online.run(pg_server, SMOKE)
    assert len(table.rows) == 3
    assert all(len(row[3].split(", ")) == SMOKE.writers for row in table.rows)


def test_chain_benchmark_times_the_schema_checks(pg_server: PgServer) -> None:
    """6: the schema checks pass and are timed on the real chain plus generated revisions."""
    table = chain.run(pg_server, SMOKE)
    assert not table.notes, table.notes
    assert [row[0] for row in table.rows] == [
        *(f"`check_{name}`" for name in SMOKE.checks),
        "**all checks**",
    ]


def test_pooler_benchmark_compares_direct_and_pgbouncer(pg_server: PgServer) -> None:
    """7: every CRUD call is timed directly and through PgBouncer, with their p50 ratio."""
    if pgb.binary() is None:
        pytest.skip(pgb.MISSING)
    table = pooler.run(pg_server, SMOKE)
    assert [row[1] for row in table.rows] == list(pooler.OPS)
    assert all(row[6].endswith("x") and int(row[7]) > 0 for row in table.rows)


def test_contract_benchmark_runs_every_part(pg_server: PgServer) -> None:
    """8: a v1.1 revision's stall (all in a full run), list variants, count, keyset, trips."""
    stalls, lists, counts, pages, trips = contract.run(pg_server, SMOKE)
    assert [row[0] for row in stalls.rows[1:]] == [
        f"`alembic upgrade {r}`" for r in contract.measured(SMOKE)
    ]
    assert contract.measured(SMOKE) == contract.REVISIONS[-1:]
    assert contract.measured(Sizes()) == contract.REVISIONS
    assert len(lists.rows) == len(contract.SORTS) * 2 * len(contract.FILTERS)
    assert all(row[3].startswith("Limit") for row in lists.rows)
    assert len(counts.rows) == 3 and len(pages.rows) == 2
    # v1.1: per write its owner's set_config (row-level security), the statement, COMMIT.
    assert [row[1] for row in trips.rows] == ["10", "9"]


def test_rls_benchmark_puts_the_candidates_side_by_side(pg_server: PgServer) -> None:
    """9: every variant as list_tasks, the policies alone, the owner and (searches) upstream's
    query, each with its plan; every sort's first and middle page; the cursor's cost."""
    candidates, sorts = rls.run(pg_server, SMOKE)
    assert {row[1] for row in candidates.rows} == {rls.LIST, rls.POLICIES, rls.OWNER, rls.NAIVE}
    assert {row[0] for row in candidates.rows} >= set(rls.VARIANTS)
    assert all(row[2] and row[5] and row[8].endswith("x") for row in candidates.rows)
    assert len(sorts.rows) == len(rls.SORTS) * 2 * 2
    assert "sealing" in candidates.notes[0] and "set_config" in candidates.notes[1]


def test_failclosed_benchmark_times_the_app_with_and_without_the_per_transaction_user(
    pg_server: PgServer,
) -> None:
    """10: each call of the app before and after, the precondition's cost, the side channels."""
    table = failclosed.run(pg_server, SMOKE)
    assert [row[0] for row in table.rows][:2] == [
        "empty transaction, unbound session",
        "list_tasks, bound session (get_user_session)",
    ]
    assert len(table.rows) == 6 and all(row[-1].endswith(" ms") for row in table.rows)
    assert "unbound reset" in table.notes[0] and "expected_updated_at" in table.notes[1]
    assert any("$1" in note for note in table.notes)  # psycopg 3 binds on the server
