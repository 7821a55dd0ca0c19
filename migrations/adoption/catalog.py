"""A schema as facts read from PostgreSQL's catalog: what adoption compares, and the
sentences that say how two schemas differ.

`describe(conn, names)` reads the objects of the current schema that carry one of the given
names (the project's tables, enum types and functions; everything else in the database
belongs to another tool and is left out): each table's columns (in order), constraints,
indexes, triggers, row-level security, policies, grants and the sequences it owns; the enum
types with their labels; the functions (a digest of their definition). Names are written as
the server prints them with the schema on the search_path, and the role that owns a table
is written `<owner>`, so that the same schema reads the same in any database, whoever owns
it. The descriptions of the revisions are stored the same way (revisions.json).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, text

OWNER = "<owner>"
ADOPTION_PREFIX = "adopt_"  # adoption's own objects on the legacy table (its sync trigger)


@dataclass
class Table:
    """One table: every field is a name -> definition map, except `security` and `grants`."""

    columns: dict[str, str] = field(default_factory=dict)  # in column order
    constraints: dict[str, str] = field(default_factory=dict)
    indexes: dict[str, str] = field(default_factory=dict)
    triggers: dict[str, str] = field(default_factory=dict)
    security: str = "off"
    policies: dict[str, str] = field(default_factory=dict)
    grants: list[str] = field(default_factory=list)
    sequences: dict[str, str] = field(default_factory=dict)


@dataclass
class Schema:
    tables: dict[str, Table] = field(default_factory=dict)
    enums: dict[str, list[str]] = field(default_factory=dict)
    functions: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schema:
        tables = {name: Table(**table) for name, table in data["tables"].items()}
        return cls(tables, dict(data["enums"]), dict(data["functions"]))


def column_text(type_: str, not_null: bool, default: str | None, identity: str) -> str:
    """A column as one phrase: `bigint NOT NULL GENERATED ALWAYS AS IDENTITY`."""
    parts = [type_, "NOT NULL" if not_null else "NULL"]
    if default is not None:
        parts.append(f"DEFAULT {default}")
    if identity:
        parts.append(f"GENERATED {'ALWAYS' if identity == 'a' else 'BY DEFAULT'} AS IDENTITY")
    return " ".join(parts)


_TABLES = """
SELECT c.oid, c.relname, c.relrowsecurity, c.relforcerowsecurity, c.relowner
FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
  AND c.relname = ANY(:names)
"""
_COLUMNS = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = ANY(:oids) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""
# contype 'n': PostgreSQL 18 keeps NOT NULL as constraints too; the columns say it already.
_CONSTRAINTS = """
SELECT conrelid, conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = ANY(:oids) AND contype <> 'n'
"""
_INDEXES = """
SELECT i.indrelid, c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = ANY(:oids)
"""
_TRIGGERS = """
SELECT tgrelid, tgname, pg_get_triggerdef(oid), tgenabled FROM pg_trigger
WHERE tgrelid = ANY(:oids) AND NOT tgisinternal
"""
_POLICIES = """
SELECT p.polrelid, p.polname, p.polcmd, p.polpermissive,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE r::regrole::text END
             FROM unnest(p.polroles) r ORDER BY 1),
       pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
FROM pg_policy p WHERE p.polrelid = ANY(:oids)
"""
# Grants on the tables and their sequences, the owner's own left out.
_GRANTS = """
SELECT c.oid, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
       string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type)
FROM pg_class c, aclexplode(c.relacl) a
WHERE c.oid = ANY(:oids) AND a.grantee <> c.relowner
GROUP BY 1, 2
"""
_SEQUENCES = """
SELECT d.refobjid, s.oid, s.relname, format_type(q.seqtypid, NULL), q.seqstart, q.seqincrement,
       q.seqmin, q.seqmax, q.seqcache, q.seqcycle, d.deptype
FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_sequence q ON q.seqrelid = s.oid
WHERE d.classid = 'pg_class'::regclass AND d.refobjid = ANY(:oids) AND d.deptype IN ('a', 'i')
"""
_ENUMS = """
SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)
FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
WHERE t.typnamespace = current_schema()::regnamespace AND t.typname = ANY(:names)
GROUP BY t.typname
"""
_FUNCTIONS = """
SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       pg_get_functiondef(p.oid)
FROM pg_proc p
WHERE p.pronamespace = current_schema()::regnamespace AND p.prokind = 'f'
  AND p.proname = ANY(:names)
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
"""
_COMMANDS = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}


def describe(conn: Connection, names: set[str] | None = None) -> Schema:
    """The schema of the current schema's objects named in `names` (see the module doc);
    names=None: every table (but alembic_version), enum type and function there."""
    if names is None:
        names = _all_names(conn)
    wanted = {"names": sorted(names)}
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    owners: dict[int, int] = {}
    found = Schema()
    by_oid: dict[int, Table] = {}
    for oid, name, rls, forced, owner in conn.execute(text(_TABLES), wanted):
        by_oid[oid] = found.tables[name] = Table()
        by_oid[oid].security = "forced" if rls and forced else "enabled" if rls else "off"
        owners[oid] = owner
    oids = {"oids": list(by_oid)}
    role = _role_names(conn, set(owners.values()))
    for rel, name, type_, not_null, default, identity in conn.execute(text(_COLUMNS), oids):
        by_oid[rel].columns[name] = column_text(type_, not_null, default, identity)
    for rel, name, definition in conn.execute(text(_CONSTRAINTS), oids):
        by_oid[rel].constraints[name] = definition
    for rel, name, definition, valid in conn.execute(text(_INDEXES), oids):
        body = re.sub(r"^CREATE (UNIQUE )?INDEX \S+ ON (ONLY )?\S+ ", r"\1", definition)
        by_oid[rel].indexes[name] = body + ("" if valid else " (INVALID: a build that failed)")
    for rel, name, definition, enabled in conn.execute(text(_TRIGGERS), oids):
        if name.startswith(ADOPTION_PREFIX):
            continue
        body = re.sub(r"^CREATE (CONSTRAINT )?TRIGGER \S+ ", "", definition)
        body = body.replace(f" ON {schema}.", " ON ").replace(f" FUNCTION {schema}.", " FUNCTION ")
        by_oid[rel].triggers[name] = body + ("" if enabled != "D" else " (DISABLED)")
    for rel, name, cmd, permissive, roles, using, check in conn.execute(text(_POLICIES), oids):
        to = ", ".join(OWNER if r == role.get(owners[rel]) else r for r in roles)
        words = [f"{'PERMISSIVE' if permissive else 'RESTRICTIVE'} FOR {_COMMANDS[cmd]} TO {to}"]
        words += [f"USING ({using})"] if using is not None else []
        words += [f"WITH CHECK ({check})"] if check is not None else []
        by_oid[rel].policies[name] = " ".join(words)
    sequences: dict[int, tuple[Table, str]] = {}
    for rel, seq, name, type_, start, step, low, high, cache, cycle, kind in conn.execute(
        text(_SEQUENCES), oids
    ):
        sequences[seq] = (by_oid[rel], name)
        by_oid[rel].sequences[name] = (
            f"{'identity' if kind == 'i' else 'owned'} {type_} START {start} INCREMENT {step} "
            f"MIN {low} MAX {high} CACHE {cache}{' CYCLE' if cycle else ''}"
        )
    for oid, grantee, privileges in conn.execute(text(_GRANTS), {"oids": [*by_oid, *sequences]}):
        if oid in by_oid:
            by_oid[oid].grants.append(f"{grantee}: {privileges}")
        else:
            table, name = sequences[oid]
            table.grants.append(f"{grantee}: {privileges} on sequence {name}")
    for table in found.tables.values():
        table.grants.sort()
        for part in ("constraints", "indexes", "triggers", "policies", "sequences"):
            setattr(table, part, dict(sorted(getattr(table, part).items())))
    for name, labels in conn.execute(text(_ENUMS), wanted):
        found.enums[name] = list(labels)
    for signature, definition in conn.execute(text(_FUNCTIONS), wanted):
        body = definition.replace(f"FUNCTION {schema}.", "FUNCTION ", 1)
        found.functions[signature] = hashlib.sha256(body.encode()).hexdigest()[:16]
    found.tables = dict(sorted(found.tables.items()))
    found.enums = dict(sorted(found.enums.items()))
    found.functions = dict(sorted(found.functions.items()))
    return found


def _all_names(conn: Connection) -> set[str]:
    rows = conn.execute(
        text(
            "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
            "AND relkind IN ('r', 'p') AND relname <> 'alembic_version' "
            "UNION SELECT typname FROM pg_type WHERE typnamespace = current_schema()::regnamespace "
            "AND typtype = 'e' "
            "UNION SELECT proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace"
        )
    )
    return set(rows.scalars())


def _role_names(conn: Connection, oids: set[int]) -> dict[int, str]:
    rows = conn.execute(
        text("SELECT oid, rolname FROM pg_roles WHERE oid = ANY(:o)"), {"o": list(oids)}
    )
    return {oid: name for oid, name in rows}


def names_of(*schemas: Schema) -> set[str]:
    """Every table, enum type and function name in the schemas (what describe() reads)."""
    found: set[str] = set()
    for schema in schemas:
        found |= set(schema.tables) | set(schema.enums)
        found |= {signature.split("(", 1)[0] for signature in schema.functions}
    return found


_PARTS = (
    ("constraints", "constraint"),
    ("indexes", "index"),
    ("triggers", "trigger"),
    ("policies", "policy"),
    ("sequences", "sequence"),
)


def differences(live: Schema, want: Schema, what: str, *, ordered: bool = True) -> list[str]:
    """How the live schema differs from `want` ("revision 0003's schema", "the nearest known
    shape (L1)"), as sentences; [] when equal. ordered: the column order counts too."""
    found: list[str] = []
    for name in sorted(want.tables.keys() - live.tables.keys()):
        found.append(f"table {name} is missing ({what} has it)")
    for name in sorted(live.tables.keys() - want.tables.keys()):
        found.append(f"table {name} is not in {what}")
    for name in sorted(live.tables.keys() & want.tables.keys()):
        found += _table_differences(name, live.tables[name], want.tables[name], what, ordered)
    found += _map_differences(
        "enum type",
        {k: ", ".join(v) for k, v in live.enums.items()},
        {k: ", ".join(v) for k, v in want.enums.items()},
        what,
        "with labels",
    )
    found += _map_differences("function", live.functions, want.functions, what, "", body=False)
    return found


def _table_differences(name: str, live: Table, want: Table, what: str, ordered: bool) -> list[str]:
    found = _map_differences(f"column {name}.", live.columns, want.columns, what, "", join="")
    if ordered and not found and list(live.columns) != list(want.columns):
        found.append(
            f"the columns of {name} are in the order {', '.join(live.columns)}; {what} has "
            f"{', '.join(want.columns)}"
        )
    for part, word in _PARTS:
        found += _map_differences(
            f"{word} ",
            getattr(live, part),
            getattr(want, part),
            what,
            "",
            join="",
            on=f" on {name}",
        )
    if live.security != want.security:
        found.append(
            f"row-level security on {name} is {live.security}, {what} has it {want.security}"
        )
    if live.grants != want.grants:
        found.append(
            f"the grants on {name} are [{'; '.join(live.grants) or 'none'}], {what} has "
            f"[{'; '.join(want.grants) or 'none'}]"
        )
    return found


def _map_differences(
    kind: str,
    live: dict[str, str],
    want: dict[str, str],
    what: str,
    verb: str,
    *,
    join: str = " ",
    on: str = "",
    body: bool = True,
) -> list[str]:
    """Sentences for two name -> definition maps: missing, extra, and different entries."""
    found = []

    def label(name: str) -> str:
        return f"{kind}{join}{name}{on}"

    for name in [n for n in want if n not in live]:
        has = f": {verb + ' ' if verb else ''}{want[name]}" if body else ""
        found.append(f"{label(name)} is missing ({what} has it{has})")
    for name in [n for n in live if n not in want]:
        shown = f" ({verb + ' ' if verb else ''}{live[name]})" if body else ""
        found.append(f"{label(name)}{shown} is not in {what}")
    for name in [n for n in live if n in want and live[n] != want[n]]:
        if body:
            found.append(f"{label(name)} is {live[name]}, {what} has {want[name]}")
        else:
            found.append(f"{label(name)} is defined differently in {what}")
    return found
