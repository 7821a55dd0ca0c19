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
