-- The schema `alembic upgrade head` builds, as pg_dump --schema-only prints it
-- (alembic_version left out). Generated, do not edit: run `python -m tests.snapshot` after
-- changing a revision and commit the result; a test fails while this file is stale.

--
-- Name: btree_gin; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS btree_gin WITH SCHEMA public;

--
-- Name: EXTENSION btree_gin; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON EXTENSION btree_gin IS 'support for indexing common datatypes in GIN';

--
-- Name: pg_trgm; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

--
-- Name: EXTENSION pg_trgm; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON EXTENSION pg_trgm IS 'text similarity measurement and index searching based on trigrams';

--
-- Name: task_priority; Type: TYPE; Schema: public; Owner: -
--

CREATE TYPE public.task_priority AS ENUM (
    'low',
    'medium',
    'high'
);

--
-- Name: task_recurring; Type: TYPE; Schema: public; Owner: -
--

CREATE TYPE public.task_recurring AS ENUM (
    'none',
    'daily',
    'weekly',
    'monthly',
    'yearly'
);

--
-- Name: tasks_count(boolean, public.task_priority, text[], text, timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.tasks_count(is_complete boolean, with_priority public.task_priority, any_tags text[], search text, due_after timestamp with time zone, due_before timestamp with time zone) RETURNS bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
    filters CONSTANT text := 'user_id = $1
            AND ($6::boolean IS NULL OR complete = $6)
            AND ($7::public.task_priority IS NULL OR priority = $7)
            AND ($8::text[] IS NULL OR tags && $8)
            AND ($9::text IS NULL OR title ILIKE $9 OR description ILIKE $9)
            AND ($10::timestamptz IS NULL OR due_date >= $10)
            AND ($11::timestamptz IS NULL OR due_date < $11)';
    pattern text := '%' || replace(replace(replace(search, '\', '\\'), '%', '\%'), '_', '\_') || '%';
    found bigint;
    me text := NULLIF(current_setting('app.user_id', true), '');
BEGIN
    EXECUTE 'SELECT count(*) FROM public.tasks WHERE ' || filters INTO found
        USING me, NULL::bigint, NULL::timestamptz, NULL::public.task_priority, NULL::text,
            is_complete, with_priority, any_tags, pattern, due_after, due_before;
    RETURN found;
END
$_$;

--
-- Name: tasks_page_ids(text, boolean, integer, bigint, timestamp with time zone, public.task_priority, text, boolean, public.task_priority, text[], text, timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.tasks_page_ids(sort_by text, descending boolean, page_size integer, after_id bigint, after_time timestamp with time zone, after_priority public.task_priority, after_title text, is_complete boolean, with_priority public.task_priority, any_tags text[], search text, due_after timestamp with time zone, due_before timestamp with time zone) RETURNS SETOF bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
    filters CONSTANT text := 'user_id = $1
            AND ($6::boolean IS NULL OR complete = $6)
            AND ($7::public.task_priority IS NULL OR priority = $7)
            AND ($8::text[] IS NULL OR tags && $8)
            AND ($9::text IS NULL OR title ILIKE $9 OR description ILIKE $9)
            AND ($10::timestamptz IS NULL OR due_date >= $10)
            AND ($11::timestamptz IS NULL OR due_date < $11)';
    key text := CASE sort_by WHEN 'created_at' THEN 'created_at' WHEN 'due_date' THEN 'due_date'
        WHEN 'priority' THEN 'priority' WHEN 'title' THEN 'title' END;
    after_key text := CASE sort_by WHEN 'priority' THEN '$4' WHEN 'title' THEN '$5' ELSE '$3' END;
    direction text := CASE WHEN descending THEN 'DESC' ELSE 'ASC' END;
    past text := CASE WHEN descending THEN '<' ELSE '>' END;
    pattern text := '%' || replace(replace(replace(search, '\', '\\'), '%', '\%'), '_', '\_') || '%';
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
$_$;

--
-- Name: tasks_set_updated_at(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.tasks_set_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- clock_timestamp(), not now(): an UPDATE later in the inserting transaction still
    -- moves updated_at forward.
    NEW.updated_at := clock_timestamp();
    NEW.created_at := OLD.created_at;
    RETURN NEW;
END;
$$;

--
-- Name: tasks_tags_valid(text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.tasks_tags_valid(tags text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
    SELECT cardinality(tags) <= 20
        AND (cardinality(tags) = 0 OR (array_ndims(tags) = 1 AND array_lower(tags, 1) = 1))
        AND NOT EXISTS (
            SELECT FROM unnest(tags) AS t(tag)
            WHERE tag IS NULL OR char_length(tag) > 50 OR tag !~ '[^\u0009\u000a\u000b\u000c\u000d\u001c\u001d\u001e\u001f\u0020\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000]'
        )
        AND (SELECT count(DISTINCT lower(tag)) FROM unnest(tags) AS t(tag)) = cardinality(tags)
$$;

--
-- Name: tasks; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.tasks (
    id bigint NOT NULL,
    user_id character varying(255) NOT NULL,
    title character varying(200) NOT NULL,
    description character varying(1000),
    complete boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    priority public.task_priority DEFAULT 'medium'::public.task_priority NOT NULL,
    due_date timestamp with time zone,
    recurring public.task_recurring DEFAULT 'none'::public.task_recurring NOT NULL,
    recurring_end_date timestamp with time zone,
    tags text[] DEFAULT '{}'::text[] NOT NULL,
    CONSTRAINT ck_tasks_recurring_end_date_valid CHECK (((recurring_end_date IS NULL) OR ((recurring <> 'none'::public.task_recurring) AND (recurring_end_date >= due_date)))),
    CONSTRAINT ck_tasks_recurring_needs_due_date CHECK (((recurring = 'none'::public.task_recurring) OR (due_date IS NOT NULL))),
    CONSTRAINT ck_tasks_tags_valid CHECK (public.tasks_tags_valid(tags)),
    CONSTRAINT ck_tasks_title_not_blank CHECK (((title)::text ~ '[^\u0009\u000a\u000b\u000c\u000d\u001c\u001d\u001e\u001f\u0020\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000]'::text)),
    CONSTRAINT ck_tasks_user_id_not_blank CHECK (((user_id)::text ~ '[^\u0009\u000a\u000b\u000c\u000d\u001c\u001d\u001e\u001f\u0020\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000]'::text))
);

ALTER TABLE ONLY public.tasks FORCE ROW LEVEL SECURITY;

--
-- Name: tasks_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.tasks ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.tasks_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: tasks pk_tasks; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT pk_tasks PRIMARY KEY (id);

--
-- Name: ix_tasks_user_id_complete_created_at_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_tasks_user_id_complete_created_at_id ON public.tasks USING btree (user_id, complete, created_at DESC, id DESC);

--
-- Name: ix_tasks_user_id_created_at_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_tasks_user_id_created_at_id ON public.tasks USING btree (user_id, created_at DESC, id DESC);

--
-- Name: ix_tasks_user_id_due_date_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_tasks_user_id_due_date_id ON public.tasks USING btree (user_id, due_date, id);

--
-- Name: ix_tasks_user_id_priority_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_tasks_user_id_priority_id ON public.tasks USING btree (user_id, priority, id);

--
-- Name: ix_tasks_user_id_tags; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_tasks_user_id_tags ON public.tasks USING gin (user_id, tags) WITH (fastupdate=off);

--
-- Name: ix_tasks_user_id_title_description; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_tasks_user_id_title_description ON public.tasks USING gin (user_id, title public.gin_trgm_ops, description public.gin_trgm_ops) WITH (fastupdate=off);

--
-- Name: ix_tasks_user_id_title_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_tasks_user_id_title_id ON public.tasks USING btree (user_id, title, id);

--
-- Name: tasks tr_tasks_set_updated_at; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER tr_tasks_set_updated_at BEFORE UPDATE ON public.tasks FOR EACH ROW EXECUTE FUNCTION public.tasks_set_updated_at();

--
-- Name: tasks pl_tasks_delete; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY pl_tasks_delete ON public.tasks FOR DELETE TO todo_app USING (((user_id)::text = ( SELECT NULLIF(current_setting('app.user_id'::text, true), ''::text) AS "nullif")));

--
-- Name: tasks pl_tasks_insert; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY pl_tasks_insert ON public.tasks FOR INSERT TO todo_app WITH CHECK (((user_id)::text = ( SELECT NULLIF(current_setting('app.user_id'::text, true), ''::text) AS "nullif")));

--
-- Name: tasks pl_tasks_migrations; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY pl_tasks_migrations ON public.tasks TO postgres USING (true) WITH CHECK (true);

--
-- Name: tasks pl_tasks_select; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY pl_tasks_select ON public.tasks FOR SELECT TO todo_app USING (((user_id)::text = ( SELECT NULLIF(current_setting('app.user_id'::text, true), ''::text) AS "nullif")));

--
-- Name: tasks pl_tasks_update; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY pl_tasks_update ON public.tasks FOR UPDATE TO todo_app USING (((user_id)::text = ( SELECT NULLIF(current_setting('app.user_id'::text, true), ''::text) AS "nullif"))) WITH CHECK (((user_id)::text = ( SELECT NULLIF(current_setting('app.user_id'::text, true), ''::text) AS "nullif")));

--
-- Name: tasks; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.tasks ENABLE ROW LEVEL SECURITY;

--
-- Name: FUNCTION tasks_count(is_complete boolean, with_priority public.task_priority, any_tags text[], search text, due_after timestamp with time zone, due_before timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.tasks_count(is_complete boolean, with_priority public.task_priority, any_tags text[], search text, due_after timestamp with time zone, due_before timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.tasks_count(is_complete boolean, with_priority public.task_priority, any_tags text[], search text, due_after timestamp with time zone, due_before timestamp with time zone) TO todo_app;

--
-- Name: FUNCTION tasks_page_ids(sort_by text, descending boolean, page_size integer, after_id bigint, after_time timestamp with time zone, after_priority public.task_priority, after_title text, is_complete boolean, with_priority public.task_priority, any_tags text[], search text, due_after timestamp with time zone, due_before timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.tasks_page_ids(sort_by text, descending boolean, page_size integer, after_id bigint, after_time timestamp with time zone, after_priority public.task_priority, after_title text, is_complete boolean, with_priority public.task_priority, any_tags text[], search text, due_after timestamp with time zone, due_before timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.tasks_page_ids(sort_by text, descending boolean, page_size integer, after_id bigint, after_time timestamp with time zone, after_priority public.task_priority, after_title text, is_complete boolean, with_priority public.task_priority, any_tags text[], search text, due_after timestamp with time zone, due_before timestamp with time zone) TO todo_app;

--
-- Name: TABLE tasks; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,DELETE ON TABLE public.tasks TO todo_app;

--
-- Name: COLUMN tasks.user_id; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(user_id) ON TABLE public.tasks TO todo_app;

--
-- Name: COLUMN tasks.title; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(title),UPDATE(title) ON TABLE public.tasks TO todo_app;

--
-- Name: COLUMN tasks.description; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(description),UPDATE(description) ON TABLE public.tasks TO todo_app;

--
-- Name: COLUMN tasks.complete; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(complete),UPDATE(complete) ON TABLE public.tasks TO todo_app;

--
-- Name: COLUMN tasks.priority; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(priority),UPDATE(priority) ON TABLE public.tasks TO todo_app;

--
-- Name: COLUMN tasks.due_date; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(due_date),UPDATE(due_date) ON TABLE public.tasks TO todo_app;

--
-- Name: COLUMN tasks.recurring; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(recurring),UPDATE(recurring) ON TABLE public.tasks TO todo_app;

--
-- Name: COLUMN tasks.recurring_end_date; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(recurring_end_date),UPDATE(recurring_end_date) ON TABLE public.tasks TO todo_app;

--
-- Name: COLUMN tasks.tags; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(tags),UPDATE(tags) ON TABLE public.tasks TO todo_app;
