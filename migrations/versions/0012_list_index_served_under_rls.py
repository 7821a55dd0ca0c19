"""The list's page and count, index-served for the app role under row-level security.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 07:00:00+00:00

Written by hand: autogenerate cannot see functions.

Under the policies, PostgreSQL lets only LEAKPROOF operators into an index condition
(a non-LEAKPROOF one could reveal, by an error, a row the policy would filter out).
ILIKE (texticlike), && (arrayoverlap) and the enum comparisons of task_priority are not
LEAKPROOF, and only a superuser can mark a function so (nobody can on Neon). So for
todo_app a search, a tags filter and a priority sort's later pages walk every task of
the user. These two functions, owned by the table's owner (for whom the policy
pl_tasks_migrations is `true`, so every operator may be an index condition) and
EXECUTE-able by the app role only, run the list's query and return **ids only**:

- tasks_page_ids(...): the ids of one page, in order (keyset: after the cursor's sort
  key and id; tasks without a due date last in both directions);
- tasks_count(...): how many tasks match the filters.

Each applies the policy's own user condition (`user_id` = the transaction's
app.user_id; none set or '' matches no row) to every query it runs, whatever the
arguments; the app then reads the rows by id **through the policies** (models/listing.py),
so even a wrong id would not show another user's row. Every value is a bound parameter
(EXECUTE ... USING); the only identifiers are the four sort columns, from a fixed list.
A fixed search_path (pg_catalog, then pg_temp last) and schema-qualified names: nothing
the caller creates can stand in for a table, a function or an operator. The filters are
written once and folded by the planner (EXECUTE plans with the values known, so
`$5 IS NULL OR complete = $5` becomes either nothing or `complete = ...`).

Catalog changes only: no lock on tasks beyond the grant's. Downgrade drops both.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "todo_app"
# The user (the policy's condition, 0010: the transaction's app.user_id, none set or ''
# matching no row), then the filters. $1 is that user; $2-$5 the cursor (the last row's
# id and sort key: a timestamp, a priority or a title), $6-$11 the filters, $12 the page
# size. The user is a value, not an expression, so that the planner knows whose rows (and
# how many) it plans for: a heavy user's common tag walks the sort order, a rare one
# reads the GIN index.
FILTER = """user_id = $1
            AND ($6::boolean IS NULL OR complete = $6)
            AND ($7::public.task_priority IS NULL OR priority = $7)
            AND ($8::text[] IS NULL OR tags && $8)
            AND ($9::text IS NULL OR title ILIKE $9 OR description ILIKE $9)
            AND ($10::timestamptz IS NULL OR due_date >= $10)
            AND ($11::timestamptz IS NULL OR due_date < $11)"""
FILTER_ARGUMENTS = """
    is_complete boolean,
    with_priority public.task_priority,
    any_tags text[],
    search text,
    due_after timestamptz,
    due_before timestamptz"""
SAFE = """LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp"""
# A substring search as an ILIKE pattern: % and _ and the escape character are literal.
PATTERN = "'%' || replace(replace(replace(search, '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%'"

PAGE_IDS = f"""
CREATE FUNCTION public.tasks_page_ids(
    sort_by text,
    descending boolean,
    page_size integer,
    after_id bigint,
    after_time timestamptz,
    after_priority public.task_priority,
    after_title text,{FILTER_ARGUMENTS}
) RETURNS SETOF bigint
{SAFE}
AS $fn$
DECLARE
    filters CONSTANT text := FILTERS;
    key text := CASE sort_by WHEN 'created_at' THEN 'created_at' WHEN 'due_date' THEN 'due_date'
        WHEN 'priority' THEN 'priority' WHEN 'title' THEN 'title' END;
    after_key text := CASE sort_by WHEN 'priority' THEN '$4' WHEN 'title' THEN '$5' ELSE '$3' END;
    direction text := CASE WHEN descending THEN 'DESC' ELSE 'ASC' END;
    past text := CASE WHEN descending THEN '<' ELSE '>' END;
    pattern text := {PATTERN};
    -- A search of 3+ characters collects its matches through the trigram index first,
    -- then sorts them: its cost follows the matches, never a walk of the sort range.
    shape text := CASE WHEN length(search) >= 3
        THEN 'WITH m AS MATERIALIZED (SELECT id, %1$I AS k FROM public.tasks WHERE %2$s) '
             'SELECT id FROM m ORDER BY k %3$s, id %3$s LIMIT $12'
        ELSE 'SELECT id FROM public.tasks WHERE %2$s ORDER BY %1$I %3$s, id %3$s LIMIT $12' END;
    keyset text;
    got bigint := 0;
    me text := NULLIF(current_setting('app.user_id', true), '');
BEGIN
    IF key IS NULL OR descending IS NULL OR page_size IS NULL
        OR page_size NOT BETWEEN 1 AND 1001
    THEN
        RAISE EXCEPTION 'tasks_page_ids: sort_by must be created_at, due_date, priority or '
            'title, descending true or false, page_size 1-1001' USING ERRCODE = '22023';
    END IF;
    keyset := format('($2 IS NULL OR (%I, id) %s (%s, $2))', key, past, after_key);
    IF key = 'due_date' THEN
        -- Tasks without a due date come last both ways: the dated range (unless the
        -- cursor is already past it), then, while the page is not full, the undated one.
        IF after_id IS NULL OR after_time IS NOT NULL THEN
            RETURN QUERY EXECUTE format(
                shape, key, filters || ' AND due_date IS NOT NULL AND ' || keyset, direction)
                USING me, after_id, after_time, after_priority, after_title, is_complete,
                    with_priority, any_tags, pattern, due_after, due_before, page_size;
            GET DIAGNOSTICS got = ROW_COUNT;
        END IF;
        IF got < page_size THEN
            RETURN QUERY EXECUTE format(
                shape, 'id', filters || format(
                    ' AND due_date IS NULL AND ($2 IS NULL OR $3 IS NOT NULL OR id %s $2)', past),
                direction)
                USING me, after_id, after_time, after_priority, after_title, is_complete,
                    with_priority, any_tags, pattern, due_after, due_before,
                    (page_size - got)::integer;
        END IF;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(shape, key, filters || ' AND ' || keyset, direction)
        USING me, after_id, after_time, after_priority, after_title, is_complete, with_priority,
            any_tags, pattern, due_after, due_before, page_size;
END
$fn$
"""

COUNT = f"""
CREATE FUNCTION public.tasks_count({FILTER_ARGUMENTS}
) RETURNS bigint
{SAFE}
AS $fn$
DECLARE
    filters CONSTANT text := FILTERS;
    pattern text := {PATTERN};
    found bigint;
    me text := NULLIF(current_setting('app.user_id', true), '');
BEGIN
    EXECUTE 'SELECT count(*) FROM public.tasks WHERE ' || filters INTO found
        USING me, NULL::bigint, NULL::timestamptz, NULL::public.task_priority, NULL::text,
            is_complete, with_priority, any_tags, pattern, due_after, due_before;
    RETURN found;
END
$fn$
"""

PAGE_IDS_SIGNATURE = (
    "public.tasks_page_ids(text, boolean, integer, bigint, timestamptz, public.task_priority, "
    "text, boolean, public.task_priority, text[], text, timestamptz, timestamptz)"
)
COUNT_SIGNATURE = (
    "public.tasks_count(boolean, public.task_priority, text[], text, timestamptz, timestamptz)"
)


def _quoted(sql: str) -> str:
    """sql as a PostgreSQL string literal."""
    return "'" + sql.replace("'", "''") + "'"


def upgrade() -> None:
    for create, signature in ((PAGE_IDS, PAGE_IDS_SIGNATURE), (COUNT, COUNT_SIGNATURE)):
        op.execute(create.replace("FILTERS", _quoted(FILTER)))
        # Functions are EXECUTE-able by PUBLIC unless revoked: the app role only.
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {COUNT_SIGNATURE}")
    op.execute(f"DROP FUNCTION {PAGE_IDS_SIGNATURE}")
