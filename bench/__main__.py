"""`python -m bench`: run the benchmarks on a throwaway PostgreSQL and print Markdown tables."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from bench import (
    adopt,
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
from bench.harness import SMOKE, Sizes, throwaway_server
from bench.report import Table, machine

NAMES = (
    "suite",
    "isolation",
    "deploy",
    "listing",
    "online",
    "chain",
    "pooler",
    "contract",
    "rls",
    "failclosed",
    "adopt",
)


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def parse(argv: list[str]) -> tuple[argparse.Namespace, Sizes]:
    full = Sizes()
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(NAMES)} (all)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it all runs")
    p.add_argument(
        "--rows", type=ints, help=f"rows in tasks for 4; 5 and 7 use the most ({full.rows})"
    )
    p.add_argument(
        "--chain", type=ints, help=f"revisions added to the real ones for 6 ({full.chain})"
    )
    p.add_argument("--runs", type=int, help=f"list_tasks calls per case ({full.query_runs})")
    p.add_argument("--output", type=Path, help="also write the Markdown to this file")
    args = p.parse_args(argv)
    unknown = set(args.names) - set(NAMES)
    if unknown:
        p.error(f"unknown benchmark(s) {sorted(unknown)}: choose from {', '.join(NAMES)}")
    sizes = SMOKE if args.smoke else full
    if args.rows:
        sizes = dataclasses.replace(sizes, rows=args.rows)
    if args.chain:
        sizes = dataclasses.replace(sizes, chain=args.chain)
    if args.runs:
        sizes = dataclasses.replace(sizes, query_runs=args.runs)
    return args, sizes


def main(argv: list[str]) -> None:
    args, sizes = parse(argv)
    names = args.names or list(NAMES)
    command = shlex.join(["python", "-m", "bench", *argv])
    parts = ["# Benchmark results", "", machine(command), ""]
    print("\n".join(parts), flush=True)
    with throwaway_server() as server:
        runners: dict[str, Callable[[], Table | list[Table]]] = {
            "suite": lambda: suite.run(sizes),
            "isolation": lambda: isolation.run(server, sizes),
            "deploy": lambda: deploy.run(server, sizes),
            "listing": lambda: listing.run(server, sizes),
            "online": lambda: online.run(server, sizes),
            "chain": lambda: chain.run(server, sizes),
            "pooler": lambda: pooler.run(server, sizes),
            "contract": lambda: contract.run(server, sizes),
            "rls": lambda: rls.run(server, sizes),
            "failclosed": lambda: failclosed.run(server, sizes),
            "adopt": lambda: adopt.run(server, sizes),
        }
        for name in names:
            result: Table | list[Table] = runners[name]()
            for table in result if isinstance(result, list) else [result]:
                print(table.markdown(), flush=True)
                parts.append(table.markdown())
    if args.output:
        args.output.write_text("\n".join(parts))


if __name__ == "__main__":
    main(sys.argv[1:])
