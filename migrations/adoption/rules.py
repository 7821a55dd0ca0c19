"""The data check before adoption changes anything: which legacy rows break the contract.

Every rule is a SQL condition over the values the rows will have once converted (the
shape's `value` of each column, fixes applied), read in one scan of the legacy table. The
generic rules come from the head revision's schema (NOT NULL, varchar lengths, enum
labels); the others are the contract's CHECKs (not blank, recurrence, tags) with the
contract's own limits (models/task.py). A rule that is broken is reported with its count,
a few ids and the SQL that lists every such row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection, text

from migrations.adoption.catalog import Schema
from migrations.adoption.shapes import Shape

SAMPLES = 5


@dataclass(frozen=True)
class Rule:
    words: str  # what is wrong with such a row
    where: str  # SQL over converted values: true for a row that breaks the rule
    hint: str = ""  # what would fix it, when a fix option exists


@dataclass(frozen=True)
class Broken:
    rule: Rule
    count: int
    ids: list[int]
    table: str

    def sentence(self) -> str:
        ids = ", ".join(map(str, self.ids)) + (", ..." if self.count > len(self.ids) else "")
        hint = f"; {self.rule.hint}" if self.rule.hint else ""
        return (
            f"{self.count} row(s) where {self.rule.words} (id {ids}){hint}; all of them: "
            f"SELECT * FROM {self.table} WHERE {self.rule.where}"
        )


def contract_rules(
    v: dict[str, str], head: Schema, shape: Shape, hints: dict[str, str], fixed: set[str]
) -> list[Rule]:
    """The rules that apply to the shape's table converted with the values `v` (target
    column -> SQL over the legacy row; see the module doc), but those its legacy column
    types already guarantee. hints: column -> a fix option that may repair its values, not
    asked for; fixed: the columns whose values a fix changes (no guarantee holds)."""
    from models.task import NOT_BLANK_REGEX, TAG_MAX, TAGS_MAX

    rules: list[Rule] = []

    def add(column: str, words: str, where: str) -> None:
        rules.append(Rule(words, where, hints.get(column, "")))

    table = shape.table
    columns = head.tables[table].columns if table in head.tables else {}
    for name, definition in columns.items():
        if name not in v:
            continue
        legacy = shape.columns[name]
        kept = name not in fixed and legacy.value == "{name}"
        if (
            " NOT NULL" in definition
            and "IDENTITY" not in definition
            and not (kept and legacy.not_null)
        ):
            add(name, f"{name} is NULL (the contract requires a value)", f"{v[name]} IS NULL")
        length = re.match(r"character varying\((\d+)\)", definition)
        had = re.fullmatch(r"character varying\((\d+)\)", legacy.type)
        if length and not (kept and had and int(had.group(1)) <= int(length.group(1))):
            n = int(length.group(1))
            add(name, f"{name} is longer than {n} characters", f"char_length({v[name]}) > {n}")
        type_ = definition.split(" ", 1)[0]
        labels_had = shape.enums.get(legacy.type)
        if type_ in head.enums and labels_had is not None and name not in fixed:
            mapped = {label.lower() if "lower(" in legacy.value else label for label in labels_had}
            if mapped <= set(head.enums[type_]):
                continue  # a legacy enum whose every label maps to one of the target's
        if type_ in head.enums:
            labels = ", ".join(f"'{label}'" for label in head.enums[type_])
            add(name, f"{name} is not one of {labels}", f"({v[name]})::text NOT IN ({labels})")
    blank = f"!~ '{NOT_BLANK_REGEX}'"
    for name in ("user_id", "title"):
        if name in v:
            add(name, f"{name} is empty or whitespace only", f"{v[name]} {blank}")
    if {"recurring", "due_date"} <= v.keys():
        rules.append(
            Rule(
                "recurring is not 'none' but there is no due_date",
                f"(({v['recurring']})::text = 'none' OR {v['due_date']} IS NOT NULL) IS FALSE",
            )
        )
    if {"recurring", "due_date", "recurring_end_date"} <= v.keys():
        end, due = v["recurring_end_date"], v["due_date"]
        rules.append(
            Rule(
                "recurring_end_date is set without a recurrence, or before due_date",
                f"({end} IS NULL OR (({v['recurring']})::text <> 'none' AND {end} >= {due})) "
                "IS FALSE",
            )
        )
    if "tags" in v:
        tags = v["tags"]
        each = f"SELECT FROM unnest({tags}) AS t(tag) WHERE"
        tag_rules = [
            Rule(f"there are more than {TAGS_MAX} tags", f"cardinality({tags}) > {TAGS_MAX}"),
            Rule(
                "tags is not a plain list (more dimensions, or not starting at 1)",
                f"cardinality({tags}) > 0 AND (array_ndims({tags}) <> 1 OR "
                f"array_lower({tags}, 1) <> 1)",
            ),
            Rule("a tag is NULL", f"EXISTS ({each} tag IS NULL)"),
            Rule(
                f"a tag is longer than {TAG_MAX} characters",
                f"EXISTS ({each} char_length(tag) > {TAG_MAX})",
            ),
            Rule("a tag is empty or whitespace only", f"EXISTS ({each} tag {blank})"),
            Rule(
                "two tags are equal ignoring case",
                f"(SELECT count(DISTINCT lower(tag)) FROM unnest({tags}) AS t(tag)) "
                f"<> cardinality({tags})",
            ),
        ]
        # Most tasks have no tag: their rows skip the subqueries (CASE is evaluated lazily).
        rules += [
            Rule(r.words, f"CASE WHEN cardinality({tags}) = 0 THEN false ELSE {r.where} END")
            for r in tag_rules
        ]
    return rules


def check(conn: Connection, table: str, rules: list[Rule]) -> list[Broken]:
    """One scan of the table: every rule's count and first ids (no lock but a reader's)."""
    if not rules:
        return []
    parts = []
    for n, rule in enumerate(rules):
        parts.append(f"count(*) FILTER (WHERE {rule.where}) AS c{n}")
        parts.append(
            f"(array_agg(id ORDER BY id) FILTER (WHERE {rule.where}))[1:{SAMPLES}] AS i{n}"
        )
    sql = f"SELECT {', '.join(parts)} FROM {table}"
    row = conn.execute(text(sql.replace(":", "\\:"))).one()  # no bind parameters in it
    found = []
    for n, rule in enumerate(rules):
        if row[2 * n]:
            found.append(Broken(rule, row[2 * n], list(row[2 * n + 1]), table))
    return found
