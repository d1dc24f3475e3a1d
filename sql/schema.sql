-- The current schema, GENERATED from a database migrated through the numbered files of this
-- folder: do not edit it. A change to the schema is a new numbered migration (sql/README.md);
-- then regenerate this file with `python -m ignite_dagster.db.schema --write`.
-- Migrations applied: 001_schema, 002_queue_functions, 003_reconcile, 004_reconcile_media,
--   005_request_fields, 006_media_targets_catalog, 007_budgets_fair_share, 008_claim_liveness,
--   009_materialization, 010_one_claim_per_table, 011_fast_fair_claim, 012_batched_progress,
--   013_progress_refinements, 014_fair_claim_reads_its_share.

-- ====================================================================================================
-- Tables (columns in table order; constraints: primary key, unique, check, foreign keys)
-- ====================================================================================================

CREATE TABLE ai_course_jobs (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    organization_id uuid NOT NULL,
    course_id text NOT NULL,
    subject text,
    grade_band text,
    grade text,
    items_per_group integer DEFAULT 12 NOT NULL,
    levels_count integer,
    study_texts_count integer,
    mode text DEFAULT 'options'::text NOT NULL,
    strategy text,
    has_special_requests boolean DEFAULT false NOT NULL,
    wants_images boolean DEFAULT false NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    priority integer DEFAULT 100 NOT NULL,
    attempt integer DEFAULT 0 NOT NULL,
    retry_count integer DEFAULT 0 NOT NULL,
    max_retries integer DEFAULT 3 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now() NOT NULL,
    idempotency_key text,
    created_by uuid,
    requested_by text,
    worker_id text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    last_heartbeat timestamp with time zone,
    last_event_at timestamp with time zone,
    progress_stage text,
    progress_percent integer,
    progress_message text,
    result_path text,
    error text,
    reason_code text,
    provider text,
    model text,
    tokens integer,
    cost_usd numeric(10,4),
    latency_ms integer,
    processing_duration_ms integer,
    generation_duration_ms integer,
    summary jsonb,
    locale text DEFAULT 'en'::text NOT NULL,
    groups_count integer,
    request_fingerprint text,
    item_images text[] DEFAULT '{}'::text[] NOT NULL,
    tags text[] DEFAULT '{}'::text[] NOT NULL,
    visibility text DEFAULT 'org'::text NOT NULL,
    cost_known boolean,
    dagster_run_id text,
    CONSTRAINT ai_course_jobs_pkey PRIMARY KEY (id),
    CONSTRAINT ai_course_jobs_organization_id_idempotency_key_key UNIQUE (organization_id, idempotency_key),
    CONSTRAINT ai_course_jobs_course_id_check CHECK ((course_id ~ '^[a-z0-9-]{1,64}$'::text)),
    CONSTRAINT ai_course_jobs_dagster_run_id_check CHECK (((length(dagster_run_id) >= 1) AND (length(dagster_run_id) <= 64))),
    CONSTRAINT ai_course_jobs_grade_band_check CHECK (((length(grade_band) >= 1) AND (length(grade_band) <= 32))),
    CONSTRAINT ai_course_jobs_grade_check CHECK (((length(grade) >= 1) AND (length(grade) <= 32))),
    CONSTRAINT ai_course_jobs_groups_count_check CHECK (((groups_count >= 1) AND (groups_count <= 12))),
    CONSTRAINT ai_course_jobs_idempotency_key_check CHECK (((length(idempotency_key) >= 1) AND (length(idempotency_key) <= 255))),
    CONSTRAINT ai_course_jobs_item_images_check CHECK (((array_position(item_images, NULL::text) IS NULL) AND (cardinality(item_images) <= 200) AND (array_to_string(item_images, ','::text) ~ '^((stimulus|options):(all|0|[1-9][0-9]{0,3})(,|$))*$'::text))),
    CONSTRAINT ai_course_jobs_items_per_group_check CHECK (((items_per_group >= 1) AND (items_per_group <= 100))),
    CONSTRAINT ai_course_jobs_levels_count_check CHECK (((levels_count >= 1) AND (levels_count <= 20))),
    CONSTRAINT ai_course_jobs_locale_check CHECK ((locale ~ '^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?$'::text)),
    CONSTRAINT ai_course_jobs_max_retries_check CHECK ((max_retries >= 0)),
    CONSTRAINT ai_course_jobs_mode_check CHECK ((mode = ANY (ARRAY['options'::text, 'numeric'::text]))),
    CONSTRAINT ai_course_jobs_progress_percent_check CHECK (((progress_percent >= 0) AND (progress_percent <= 100))),
    CONSTRAINT ai_course_jobs_request_fingerprint_check CHECK ((request_fingerprint ~ '^[0-9a-f]{64}$'::text)),
    CONSTRAINT ai_course_jobs_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'processing'::text, 'done'::text, 'failed'::text, 'stale'::text, 'dead_letter'::text]))),
    CONSTRAINT ai_course_jobs_strategy_check CHECK ((strategy = ANY (ARRAY['deterministic'::text, 'llm'::text]))),
    CONSTRAINT ai_course_jobs_study_texts_count_check CHECK (((study_texts_count >= 0) AND (study_texts_count <= 20))),
    CONSTRAINT ai_course_jobs_subject_check CHECK (((length(subject) >= 1) AND (length(subject) <= 200))),
    CONSTRAINT ai_course_jobs_tags_check CHECK (((array_position(tags, NULL::text) IS NULL) AND (cardinality(tags) <= 20) AND (array_to_string(tags, ','::text) ~ '^([a-z0-9]+(-[a-z0-9]+)*(,|$))*$'::text))),
    CONSTRAINT ai_course_jobs_visibility_check CHECK ((visibility = ANY (ARRAY['org'::text, 'public'::text]))),
    CONSTRAINT ai_course_jobs_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id)
);

CREATE TABLE ai_media_jobs (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    organization_id uuid NOT NULL,
    course_id text NOT NULL,
    course_job_id uuid,
    media_type text DEFAULT 'image'::text NOT NULL,
    prompt text NOT NULL,
    style text,
    provider text,
    target_ref jsonb NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    priority integer DEFAULT 100 NOT NULL,
    attempt integer DEFAULT 0 NOT NULL,
    retry_count integer DEFAULT 0 NOT NULL,
    max_retries integer DEFAULT 3 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now() NOT NULL,
    idempotency_key text,
    created_by uuid,
    requested_by text,
    worker_id text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    last_heartbeat timestamp with time zone,
    last_event_at timestamp with time zone,
    progress_stage text,
    progress_percent integer,
    progress_message text,
    result_url text,
    result_path text,
    error text,
    reason_code text,
    model text,
    metadata jsonb,
    cost_usd numeric(10,4),
    dagster_run_id text,
    CONSTRAINT ai_media_jobs_pkey PRIMARY KEY (id),
    CONSTRAINT ai_media_jobs_course_id_check CHECK ((course_id ~ '^[a-z0-9-]{1,64}$'::text)),
    CONSTRAINT ai_media_jobs_dagster_run_id_check CHECK (((length(dagster_run_id) >= 1) AND (length(dagster_run_id) <= 64))),
    CONSTRAINT ai_media_jobs_max_retries_check CHECK ((max_retries >= 0)),
    CONSTRAINT ai_media_jobs_media_type_check CHECK ((media_type = ANY (ARRAY['image'::text, 'audio'::text, 'video'::text]))),
    CONSTRAINT ai_media_jobs_progress_percent_check CHECK (((progress_percent >= 0) AND (progress_percent <= 100))),
    CONSTRAINT ai_media_jobs_prompt_check CHECK (((length(prompt) >= 1) AND (length(prompt) <= 4000))),
    CONSTRAINT ai_media_jobs_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'processing'::text, 'done'::text, 'failed'::text, 'stale'::text, 'dead_letter'::text]))),
    CONSTRAINT ai_media_jobs_target_ref_check CHECK (((target_ref ? 'type'::text) AND ((target_ref ->> 'type'::text) = ANY (ARRAY['study_text'::text, 'item_stimulus'::text, 'item_option'::text])))),
    CONSTRAINT ai_media_jobs_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id)
);

CREATE TABLE catalog_updates (
    id bigserial,
    course_id text NOT NULL,
    organization_id uuid NOT NULL,
    action text NOT NULL,
    catalog_version bigint DEFAULT nextval('catalog_version_seq'::regclass) NOT NULL,
    course_title text,
    job_id uuid,
    course_version integer,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT catalog_updates_pkey PRIMARY KEY (id),
    CONSTRAINT catalog_updates_action_check CHECK ((action = ANY (ARRAY['added'::text, 'updated'::text, 'deleted'::text])))
);

CREATE TABLE course_metadata (
    id text NOT NULL,
    organization_id uuid NOT NULL,
    title text NOT NULL,
    subject text,
    grade_band text,
    visibility text DEFAULT 'org'::text NOT NULL,
    tags jsonb DEFAULT '[]'::jsonb NOT NULL,
    tag_ids uuid[] DEFAULT '{}'::uuid[] NOT NULL,
    content_version integer DEFAULT 0 NOT NULL,
    etag integer DEFAULT 0 NOT NULL,
    item_count integer DEFAULT 0 NOT NULL,
    storage_path text NOT NULL,
    latest_job_id uuid,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    archived_at timestamp with time zone,
    deleted_at timestamp with time zone,
    CONSTRAINT course_metadata_pkey PRIMARY KEY (id),
    CONSTRAINT course_metadata_id_check CHECK ((id ~ '^[a-z0-9-]{1,64}$'::text)),
    CONSTRAINT course_metadata_visibility_check CHECK ((visibility = ANY (ARRAY['org'::text, 'public'::text]))),
    CONSTRAINT course_metadata_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id)
);

CREATE TABLE course_versions (
    id bigserial,
    course_id text NOT NULL,
    version integer NOT NULL,
    storage_path text NOT NULL,
    content_sha256 text NOT NULL,
    published_by uuid,
    published_by_agent text,
    published_at timestamp with time zone DEFAULT now() NOT NULL,
    change_summary text,
    metadata_snapshot jsonb,
    CONSTRAINT course_versions_pkey PRIMARY KEY (id),
    CONSTRAINT course_versions_course_id_version_key UNIQUE (course_id, version),
    CONSTRAINT course_versions_version_check CHECK ((version >= 1)),
    CONSTRAINT course_versions_course_id_fkey FOREIGN KEY (course_id) REFERENCES course_metadata(id)
);

CREATE TABLE job_events (
    id bigserial,
    job_id uuid NOT NULL,
    job_table text NOT NULL,
    attempt integer,
    seq integer NOT NULL,
    step text NOT NULL,
    status text NOT NULL,
    progress integer,
    message text,
    meta jsonb,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT job_events_pkey PRIMARY KEY (id),
    CONSTRAINT job_events_job_table_check CHECK ((job_table = ANY (ARRAY['ai_course_jobs'::text, 'ai_media_jobs'::text]))),
    CONSTRAINT job_events_status_check CHECK ((status = ANY (ARRAY['info'::text, 'success'::text, 'error'::text])))
);

CREATE TABLE org_usage_daily (
    organization_id uuid NOT NULL,
    day date NOT NULL,
    calls bigint DEFAULT 0 NOT NULL,
    tokens bigint DEFAULT 0 NOT NULL,
    cost_usd numeric(14,6) DEFAULT 0 NOT NULL,
    unpriced_calls bigint DEFAULT 0 NOT NULL,
    unpriced_tokens bigint DEFAULT 0 NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT org_usage_daily_pkey PRIMARY KEY (organization_id, day),
    CONSTRAINT org_usage_daily_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id) ON DELETE CASCADE
);

CREATE TABLE organizations (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    slug text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT organizations_pkey PRIMARY KEY (id),
    CONSTRAINT organizations_slug_key UNIQUE (slug),
    CONSTRAINT organizations_name_check CHECK (((length(name) >= 1) AND (length(name) <= 200))),
    CONSTRAINT organizations_slug_check CHECK ((slug ~ '^[a-z0-9-]{1,64}$'::text))
);

CREATE TABLE provider_budget_grants (
    id bigserial,
    budget_key text NOT NULL,
    granted_at timestamp with time zone NOT NULL,
    tokens bigint NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    released_at timestamp with time zone,
    holder text,
    CONSTRAINT provider_budget_grants_pkey PRIMARY KEY (id),
    CONSTRAINT provider_budget_grants_tokens_check CHECK ((tokens >= 0)),
    CONSTRAINT provider_budget_grants_budget_key_fkey FOREIGN KEY (budget_key) REFERENCES provider_budgets(budget_key) ON DELETE CASCADE
);

CREATE TABLE provider_budgets (
    budget_key text NOT NULL,
    rpm integer,
    tpm bigint,
    max_in_flight integer,
    paused_until timestamp with time zone,
    pause_reason text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT provider_budgets_pkey PRIMARY KEY (budget_key),
    CONSTRAINT provider_budgets_max_in_flight_check CHECK ((max_in_flight > 0)),
    CONSTRAINT provider_budgets_rpm_check CHECK ((rpm > 0)),
    CONSTRAINT provider_budgets_tpm_check CHECK ((tpm > 0))
);

CREATE TABLE schema_migrations (
    version text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT schema_migrations_pkey PRIMARY KEY (version)
);

CREATE TABLE user_roles (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    organization_id uuid,
    role text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT user_roles_pkey PRIMARY KEY (id),
    CONSTRAINT user_roles_check CHECK (((role = 'superadmin'::text) = (organization_id IS NULL))),
    CONSTRAINT user_roles_role_check CHECK ((role = ANY (ARRAY['superadmin'::text, 'org_admin'::text, 'editor'::text, 'viewer'::text]))),
    CONSTRAINT user_roles_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES organizations(id) ON DELETE CASCADE
);

-- ====================================================================================================
-- Sequences (those a serial or identity column owns come with their table)
-- ====================================================================================================

CREATE SEQUENCE catalog_version_seq AS bigint START 1 INCREMENT 1 MINVALUE 1 MAXVALUE 9223372036854775807 CACHE 1;

-- ====================================================================================================
-- Indexes (by table; those of primary keys and unique constraints are the constraints above)
-- ====================================================================================================

CREATE INDEX ai_course_jobs_claimable ON public.ai_course_jobs USING btree (priority, created_at) WHERE (status = ANY (ARRAY['pending'::text, 'failed'::text, 'stale'::text]));
CREATE INDEX ai_course_jobs_course ON public.ai_course_jobs USING btree (course_id);
CREATE INDEX ai_course_jobs_org_claimable ON public.ai_course_jobs USING btree (organization_id, priority, created_at) WHERE (status = ANY (ARRAY['pending'::text, 'failed'::text, 'stale'::text]));
CREATE INDEX ai_course_jobs_org_created ON public.ai_course_jobs USING btree (organization_id, created_at DESC);
CREATE INDEX ai_course_jobs_processing ON public.ai_course_jobs USING btree (last_heartbeat) WHERE ((status = 'processing'::text) AND (last_heartbeat IS NOT NULL));
CREATE INDEX ai_course_jobs_processing_course ON public.ai_course_jobs USING btree (course_id) WHERE ((status = 'processing'::text) AND (course_id IS NOT NULL));
CREATE INDEX ai_course_jobs_processing_org ON public.ai_course_jobs USING btree (organization_id) WHERE ((status = 'processing'::text) AND (organization_id IS NOT NULL));

CREATE INDEX ai_media_jobs_claimable ON public.ai_media_jobs USING btree (priority, created_at) WHERE (status = ANY (ARRAY['pending'::text, 'failed'::text, 'stale'::text]));
CREATE INDEX ai_media_jobs_course ON public.ai_media_jobs USING btree (course_id);
CREATE UNIQUE INDEX ai_media_jobs_idempotency ON public.ai_media_jobs USING btree (organization_id, idempotency_key) WHERE ((status = ANY (ARRAY['pending'::text, 'processing'::text])) AND (idempotency_key IS NOT NULL));
CREATE INDEX ai_media_jobs_processing ON public.ai_media_jobs USING btree (last_heartbeat) WHERE (status = 'processing'::text);

CREATE UNIQUE INDEX catalog_updates_job ON public.catalog_updates USING btree (job_id) WHERE (job_id IS NOT NULL);
CREATE UNIQUE INDEX catalog_updates_version ON public.catalog_updates USING btree (course_id, course_version) WHERE (course_version IS NOT NULL);

CREATE INDEX course_metadata_org ON public.course_metadata USING btree (organization_id);
CREATE INDEX course_metadata_public ON public.course_metadata USING btree (updated_at DESC) WHERE ((visibility = 'public'::text) AND (deleted_at IS NULL));
CREATE INDEX course_metadata_tags ON public.course_metadata USING gin (tags jsonb_path_ops);

CREATE INDEX job_events_job ON public.job_events USING btree (job_id, seq);

CREATE INDEX provider_budget_grants_window ON public.provider_budget_grants USING btree (budget_key, granted_at);

CREATE UNIQUE INDEX user_roles_unique ON public.user_roles USING btree (user_id, COALESCE(organization_id, '00000000-0000-0000-0000-000000000000'::uuid), role);

-- ====================================================================================================
-- Functions (each as last defined: the migration that replaced it last wins)
-- ====================================================================================================

-- last defined in 002_queue_functions.sql
CREATE OR REPLACE FUNCTION public.add_job_event(p_job_id uuid, p_job_table text, p_attempt integer, p_step text, p_status text, p_progress integer DEFAULT NULL::integer, p_message text DEFAULT NULL::text, p_meta jsonb DEFAULT NULL::jsonb)
 RETURNS bigint
 LANGUAGE sql
AS $function$
    INSERT INTO job_events (job_id, job_table, attempt, seq, step, status, progress, message, meta)
    SELECT p_job_id, ignite_check_job_table(p_job_table), p_attempt,
           coalesce((SELECT max(seq) FROM job_events WHERE job_id = p_job_id), 0) + 1,
           p_step, p_status, p_progress, p_message, p_meta
    RETURNING id
$function$;

-- last defined in 012_batched_progress.sql
CREATE OR REPLACE FUNCTION public.add_job_events(p_job_id uuid, p_job_table text, p_attempt integer, p_events jsonb)
 RETURNS integer
 LANGUAGE sql
AS $function$
    WITH base AS (SELECT coalesce((SELECT max(seq) FROM job_events WHERE job_id = p_job_id), 0) AS seq),
    written AS (
        INSERT INTO job_events (job_id, job_table, attempt, seq, step, status, progress, message, meta)
        SELECT p_job_id, ignite_check_job_table(p_job_table), p_attempt, base.seq + e.n::int,
               e.doc->>'step', coalesce(e.doc->>'status', 'info'), (e.doc->>'progress')::int, e.doc->>'message',
               CASE WHEN jsonb_typeof(e.doc->'meta') = 'object' THEN e.doc->'meta' END
        FROM base, jsonb_array_elements(coalesce(p_events, '[]'::jsonb)) WITH ORDINALITY AS e(doc, n)
        ORDER BY e.n
        RETURNING 1)
    SELECT count(*)::int FROM written
$function$;

-- last defined in 007_budgets_fair_share.sql
CREATE OR REPLACE FUNCTION public.budget_acquire(p_key text, p_rpm integer, p_tpm bigint, p_max_in_flight integer, p_tokens bigint, p_lease_seconds double precision, p_holder text DEFAULT NULL::text, p_window_seconds double precision DEFAULT 60)
 RETURNS TABLE(grant_id bigint, wait_seconds double precision)
 LANGUAGE plpgsql
AS $function$
DECLARE
    b provider_budgets;
    t timestamptz;
    win interval := p_window_seconds * interval '1 second';
    n_window int;
    tok_window bigint;
    n_flight int;
    oldest timestamptz;
    new_id bigint;
BEGIN
    INSERT INTO provider_budgets (budget_key, rpm, tpm, max_in_flight)
    VALUES (p_key, p_rpm, p_tpm, p_max_in_flight) ON CONFLICT (budget_key) DO NOTHING;
    SELECT * INTO b FROM provider_budgets WHERE budget_key = p_key FOR UPDATE;
    t := clock_timestamp();
    IF b.rpm IS DISTINCT FROM p_rpm OR b.tpm IS DISTINCT FROM p_tpm OR b.max_in_flight IS DISTINCT FROM p_max_in_flight THEN
        UPDATE provider_budgets SET rpm = p_rpm, tpm = p_tpm, max_in_flight = p_max_in_flight, updated_at = t
        WHERE budget_key = p_key;
    END IF;
    IF b.paused_until IS NOT NULL AND b.paused_until > t THEN
        RETURN QUERY SELECT NULL::bigint, extract(epoch FROM b.paused_until - t)::double precision;
        RETURN;
    END IF;
    -- grants that left the window and are no longer in flight are history
    DELETE FROM provider_budget_grants g
    WHERE g.budget_key = p_key AND g.granted_at < t - win AND (g.released_at IS NOT NULL OR g.expires_at < t);
    SELECT count(*) FILTER (WHERE g.granted_at > t - win),
           coalesce(sum(g.tokens) FILTER (WHERE g.granted_at > t - win), 0),
           count(*) FILTER (WHERE g.released_at IS NULL AND g.expires_at > t),
           min(g.granted_at) FILTER (WHERE g.granted_at > t - win)
      INTO n_window, tok_window, n_flight, oldest
      FROM provider_budget_grants g WHERE g.budget_key = p_key;
    IF p_max_in_flight IS NOT NULL AND n_flight >= p_max_in_flight THEN
        RETURN QUERY SELECT NULL::bigint, 0.05::double precision;  -- a lease ends when a call returns
        RETURN;
    END IF;
    IF p_rpm IS NOT NULL AND n_window >= p_rpm THEN
        -- the (n - rpm + 1)-th oldest grant must leave the window first
        RETURN QUERY SELECT NULL::bigint, greatest(0.005, extract(epoch FROM (
            SELECT g.granted_at FROM provider_budget_grants g
            WHERE g.budget_key = p_key AND g.granted_at > t - win
            ORDER BY g.granted_at OFFSET n_window - p_rpm LIMIT 1) + win - t))::double precision;
        RETURN;
    END IF;
    IF p_tpm IS NOT NULL AND tok_window > 0 AND tok_window + p_tokens > p_tpm THEN
        -- the oldest grant leaves, or an in-flight reservation is corrected down, whichever comes first
        RETURN QUERY SELECT NULL::bigint,
            CASE WHEN n_flight > 0 THEN least(0.05, greatest(0.005, extract(epoch FROM oldest + win - t)))
                 ELSE greatest(0.005, extract(epoch FROM oldest + win - t)) END::double precision;
        RETURN;
    END IF;
    INSERT INTO provider_budget_grants (budget_key, granted_at, tokens, expires_at, holder)
    VALUES (p_key, t, greatest(0, p_tokens), t + p_lease_seconds * interval '1 second', p_holder)
    RETURNING id INTO new_id;
    RETURN QUERY SELECT new_id, 0::double precision;
END $function$;

-- last defined in 007_budgets_fair_share.sql
CREATE OR REPLACE FUNCTION public.budget_pause(p_key text, p_seconds double precision, p_reason text DEFAULT NULL::text)
 RETURNS timestamp with time zone
 LANGUAGE sql
AS $function$
    INSERT INTO provider_budgets AS b (budget_key, paused_until, pause_reason, updated_at)
    VALUES (p_key, clock_timestamp() + p_seconds * interval '1 second', p_reason, now())
    ON CONFLICT (budget_key) DO UPDATE SET
        paused_until = greatest(coalesce(b.paused_until, '-infinity'), excluded.paused_until),
        pause_reason = excluded.pause_reason, updated_at = now()
    RETURNING paused_until
$function$;

-- last defined in 007_budgets_fair_share.sql
CREATE OR REPLACE FUNCTION public.budget_release(p_grant_id bigint, p_tokens bigint DEFAULT NULL::bigint)
 RETURNS void
 LANGUAGE sql
AS $function$
    UPDATE provider_budget_grants SET released_at = clock_timestamp(), tokens = coalesce(greatest(0, p_tokens), tokens)
    WHERE id = p_grant_id
$function$;

-- last defined in 010_one_claim_per_table.sql
CREATE OR REPLACE FUNCTION public.claim_course_for_materialization(p_course_id text, p_worker_id text)
 RETURNS SETOF ai_course_jobs
 LANGUAGE plpgsql
AS $function$
DECLARE
    held ai_course_jobs;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('ignite-course:' || p_course_id, 0));
    SELECT * INTO held FROM ai_course_jobs
    WHERE course_id = p_course_id AND status = 'processing'
    ORDER BY started_at DESC LIMIT 1;
    IF FOUND THEN
        RETURN NEXT held;
        RETURN;
    END IF;
    -- the oldest claimable job of the course, ignoring next_attempt_at and the retry budget
    RETURN QUERY SELECT * FROM claim_course_job_ids(ARRAY(
        SELECT id FROM ai_course_jobs
        WHERE course_id = p_course_id AND status IN ('pending', 'failed', 'stale')
        ORDER BY priority, created_at
        LIMIT 1
        FOR UPDATE SKIP LOCKED), p_worker_id);
END $function$;

-- last defined in 011_fast_fair_claim.sql
CREATE OR REPLACE FUNCTION public.claim_course_job_ids(p_ids uuid[], p_worker_id text)
 RETURNS SETOF ai_course_jobs
 LANGUAGE plpgsql
AS $function$
BEGIN
    RETURN QUERY WITH u AS (
        UPDATE ai_course_jobs j SET
            status = 'processing',
            attempt = j.attempt + 1,
            retry_count = CASE WHEN j.status IN ('failed', 'stale')
                                    AND j.reason_code IS DISTINCT FROM 'budget_exhausted'
                                    AND j.retry_count < j.max_retries
                               THEN j.retry_count + 1 ELSE j.retry_count END,
            started_at = now(), last_heartbeat = now(), last_event_at = now(), updated_at = now(),
            completed_at = NULL, worker_id = p_worker_id, dagster_run_id = NULL,
            progress_stage = 'claimed', progress_percent = 0, progress_message = NULL
        FROM unnest(p_ids) WITH ORDINALITY AS c(id, nr)
        WHERE j.id = c.id
          AND j.status IN ('pending', 'failed', 'stale')
          AND NOT EXISTS (SELECT 1 FROM ai_course_jobs p
                          WHERE p.course_id = j.course_id AND p.status = 'processing' OFFSET 0)
        RETURNING j AS job, c.nr
    ) SELECT (u.job).* FROM u ORDER BY u.nr;
END $function$;

-- last defined in 014_fair_claim_reads_its_share.sql
CREATE OR REPLACE FUNCTION public.claim_course_jobs(p_limit integer, p_worker_id text DEFAULT NULL::text, p_org_cap integer DEFAULT NULL::integer)
 RETURNS SETOF ai_course_jobs
 LANGUAGE plpgsql
 SET jit TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
    ids uuid[] := '{}';
    cand_ids uuid[];
    cand_orgs uuid[];
    cand_courses text[];
    cand_first boolean[];
    lock_orgs uuid[];
    room int[];
    courses text[] := '{}';
    k int;
    i int;
    full_read boolean := p_org_cap IS NOT NULL;  -- with a cap, every organization's p_limit + 1 as before
    truncated boolean;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 THEN
        RETURN;
    END IF;
    LOOP
    -- the candidates in fair order, rows locked SKIP LOCKED, no advisory lock taken yet; cand_first marks
    -- each course's first candidate
    -- truncated: an organization may hold rows this read did not reach (it gave all its share, or it had
    -- none: busy beyond the level)
    SELECT coalesce(array_agg(f.id ORDER BY f.slot, f.priority, f.created_at) FILTER (WHERE f.id IS NOT NULL), '{}'),
           coalesce(array_agg(f.organization_id ORDER BY f.slot, f.priority, f.created_at) FILTER (WHERE f.id IS NOT NULL), '{}'),
           coalesce(array_agg(f.course_id ORDER BY f.slot, f.priority, f.created_at) FILTER (WHERE f.id IS NOT NULL), '{}'),
           coalesce(array_agg(f.nth = 1 ORDER BY f.slot, f.priority, f.created_at) FILTER (WHERE f.id IS NOT NULL), '{}'),
           coalesce(bool_or(f.rn = f.lim), false) OR coalesce(bool_or(f.unread), false)
      INTO cand_ids, cand_orgs, cand_courses, cand_first, truncated
    FROM (
        WITH RECURSIVE orgs(org) AS (
            (SELECT organization_id FROM ai_course_jobs WHERE status IN ('pending', 'failed', 'stale')
             ORDER BY organization_id LIMIT 1)
            UNION ALL
            SELECT (SELECT organization_id FROM ai_course_jobs
                    WHERE status IN ('pending', 'failed', 'stale') AND organization_id > orgs.org
                    ORDER BY organization_id LIMIT 1)
            FROM orgs WHERE orgs.org IS NOT NULL
        ), o AS MATERIALIZED (
            SELECT orgs.org FROM orgs WHERE orgs.org IS NOT NULL
        ), b AS MATERIALIZED (  -- jobs in flight, counted only when there is a cap or organizations to order
            SELECT o.org, CASE WHEN p_org_cap IS NULL AND (SELECT count(*) FROM o) < 2 THEN 0
                               ELSE (SELECT count(*) FROM ai_course_jobs p
                                     WHERE p.organization_id = o.org AND p.status = 'processing') END AS busy
            FROM o
        ), w AS MATERIALIZED (  -- the water level: the slot the p_limit-th job of the fair order reaches
            SELECT min(ceil((p_limit + lv.busy_sum)::numeric / lv.n_orgs)) AS level
            FROM (SELECT row_number() OVER (ORDER BY busy) AS n_orgs,
                         sum(busy) OVER (ORDER BY busy ROWS UNBOUNDED PRECEDING) AS busy_sum,
                         lead(busy) OVER (ORDER BY busy) AS next_busy
                  FROM b) lv
            WHERE lv.next_busy IS NULL OR ceil((p_limit + lv.busy_sum)::numeric / lv.n_orgs) <= lv.next_busy
        ), bl AS MATERIALIZED (  -- rows to read per organization: up to the level, or all a claim could take
            SELECT b.org, b.busy,
                   CASE WHEN full_read THEN p_limit + 1
                        ELSE greatest(0, least(p_limit, (SELECT level FROM w)::int - b.busy)) END AS lim
            FROM b
        ), cand AS (
            SELECT x.id, x.organization_id, x.course_id, x.priority, x.created_at, b.lim,
                   row_number() OVER (PARTITION BY x.organization_id ORDER BY x.priority, x.created_at) AS rn,
                   b.busy + row_number() OVER (PARTITION BY x.organization_id ORDER BY x.priority, x.created_at) AS slot
            FROM bl b CROSS JOIN LATERAL (
                SELECT j.id, j.organization_id, j.course_id, j.priority, j.created_at FROM ai_course_jobs j
                WHERE j.organization_id = b.org
                  AND j.status IN ('pending', 'failed', 'stale')
                  AND (j.status = 'pending' OR j.retry_count < j.max_retries OR j.reason_code = 'budget_exhausted')
                  AND j.next_attempt_at <= now()
                  -- OFFSET 0 keeps this a per-row index probe (an anti-join would read every processing row)
                  AND NOT EXISTS (SELECT 1 FROM ai_course_jobs p
                                  WHERE p.course_id = j.course_id AND p.status = 'processing' OFFSET 0)
                ORDER BY j.priority, j.created_at
                LIMIT b.lim
                FOR UPDATE OF j SKIP LOCKED
            ) x
            WHERE p_org_cap IS NULL OR b.busy < p_org_cap
        )
        SELECT c.*, u.unread
        FROM (SELECT bool_or(bl.lim = 0) AS unread FROM bl) u  -- one row even when no candidate was read
        LEFT JOIN (SELECT cand.*, row_number() OVER (PARTITION BY course_id ORDER BY slot, priority, created_at) AS nth
                   FROM cand) c ON true
    ) f;
    IF cardinality(cand_ids) = 0 AND NOT truncated THEN
        RETURN;
    END IF;
    IF p_org_cap IS NULL THEN
        -- one job per course per call (its first candidate), course try-locks taken in fair order until
        -- p_limit are held: the LIMIT pulls unnest's rows (array order) one at a time through the filter.
        -- The same key as claim_course_for_materialization: both claim paths exclude each other.
        ids := ARRAY(SELECT u.id FROM unnest(cand_ids, cand_courses, cand_first) AS u(id, course, first)
                     WHERE u.first AND pg_try_advisory_xact_lock(hashtextextended('ignite-course:' || u.course, 0))
                     LIMIT p_limit);
    ELSE
        -- each candidate organization's lock, then (a new statement, a fresh snapshot) its room under the cap
        lock_orgs := ARRAY(SELECT DISTINCT u.org FROM unnest(cand_orgs) u(org)
                      WHERE pg_try_advisory_xact_lock(hashtextextended('ignite-org:' || u.org::text, 0)));
        SELECT coalesce(array_agg(p_org_cap - (SELECT count(*) FROM ai_course_jobs q
                                               WHERE q.organization_id = u.org AND q.status = 'processing')
                                  ORDER BY u.nr), '{}')
          INTO room FROM unnest(lock_orgs) WITH ORDINALITY u(org, nr);
        FOR i IN 1 .. cardinality(cand_ids) LOOP
            EXIT WHEN cardinality(ids) >= p_limit;
            k := array_position(lock_orgs, cand_orgs[i]);
            CONTINUE WHEN k IS NULL OR room[k] <= 0;
            -- one job per course per call, among the candidates of organizations with room
            CONTINUE WHEN cand_courses[i] = ANY(courses);
            CONTINUE WHEN NOT pg_try_advisory_xact_lock(hashtextextended('ignite-course:' || cand_courses[i], 0));
            ids := ids || cand_ids[i];
            courses := courses || cand_courses[i];
            room[k] := room[k] - 1;
        END LOOP;
    END IF;
    -- fewer than asked although an organization had more rows than were read (its rows were taken by
    -- other claimers, or repeat a course): read again as 011 did, every organization's p_limit + 1
    EXIT WHEN full_read OR cardinality(ids) >= p_limit OR NOT truncated;
    full_read := true;
    ids := '{}';
    courses := '{}';
    END LOOP;
    IF cardinality(ids) > 0 THEN
        -- a new statement: its snapshot sees every claim committed before our course locks were taken
        RETURN QUERY SELECT * FROM claim_course_job_ids(ids, p_worker_id);
    END IF;
END $function$;

-- last defined in 010_one_claim_per_table.sql
CREATE OR REPLACE FUNCTION public.claim_course_media_jobs(p_course_id text, p_worker_id text, p_limit integer DEFAULT 100)
 RETURNS SETOF ai_media_jobs
 LANGUAGE plpgsql
AS $function$
BEGIN
    RETURN QUERY SELECT * FROM claim_media_job_ids(ARRAY(
        SELECT id FROM ai_media_jobs
        WHERE course_id = p_course_id AND status IN ('pending', 'failed', 'stale')
        ORDER BY priority, created_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED), p_worker_id);
END $function$;

-- last defined in 010_one_claim_per_table.sql
CREATE OR REPLACE FUNCTION public.claim_media_job_ids(p_ids uuid[], p_worker_id text)
 RETURNS SETOF ai_media_jobs
 LANGUAGE plpgsql
AS $function$
BEGIN
    RETURN QUERY WITH u AS (
        UPDATE ai_media_jobs j SET
            status = 'processing',
            attempt = j.attempt + 1,
            retry_count = CASE WHEN j.status IN ('failed', 'stale')
                                    AND j.reason_code IS DISTINCT FROM 'budget_exhausted'
                                    AND j.retry_count < j.max_retries
                               THEN j.retry_count + 1 ELSE j.retry_count END,
            started_at = now(), last_heartbeat = now(), last_event_at = now(), updated_at = now(),
            completed_at = NULL, worker_id = p_worker_id, dagster_run_id = NULL,
            progress_stage = 'claimed', progress_percent = 0, progress_message = NULL
        WHERE j.id = ANY(p_ids)
          AND j.status IN ('pending', 'failed', 'stale')
        RETURNING j.*
    ) SELECT * FROM u ORDER BY array_position(p_ids, u.id);
END $function$;

-- last defined in 010_one_claim_per_table.sql
CREATE OR REPLACE FUNCTION public.claim_media_jobs(p_limit integer, p_worker_id text DEFAULT NULL::text)
 RETURNS SETOF ai_media_jobs
 LANGUAGE plpgsql
AS $function$
BEGIN
    RETURN QUERY SELECT * FROM claim_media_job_ids(ARRAY(
        SELECT id FROM ai_media_jobs
        WHERE status IN ('pending', 'failed', 'stale')
          AND (status = 'pending' OR retry_count < max_retries)
          AND next_attempt_at <= now()
        ORDER BY priority, created_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED), p_worker_id);
END $function$;

-- last defined in 002_queue_functions.sql
CREATE OR REPLACE FUNCTION public.complete_job(p_job_id uuid, p_job_table text, p_attempt integer, p_result jsonb DEFAULT '{}'::jsonb)
 RETURNS boolean
 LANGUAGE plpgsql
AS $function$
DECLARE n int;
BEGIN
    PERFORM ignite_check_job_table(p_job_table);
    IF p_job_table = 'ai_course_jobs' THEN
        UPDATE ai_course_jobs SET
            status = 'done', completed_at = now(), updated_at = now(), last_event_at = now(),
            progress_stage = 'done', progress_percent = 100,
            progress_message = coalesce(p_result->>'progress_message', progress_message),
            error = NULL, reason_code = NULL,
            result_path = p_result->>'result_path',
            provider = p_result->>'provider',
            model = p_result->>'model',
            tokens = (p_result->>'tokens')::int,
            cost_usd = (p_result->>'cost_usd')::numeric,
            latency_ms = (p_result->>'latency_ms')::int,
            generation_duration_ms = (p_result->>'generation_duration_ms')::int,
            processing_duration_ms = (extract(epoch FROM now() - started_at) * 1000)::int,
            summary = p_result->'summary'
        WHERE id = p_job_id AND status = 'processing' AND attempt = p_attempt;
    ELSE
        UPDATE ai_media_jobs SET
            status = 'done', completed_at = now(), updated_at = now(), last_event_at = now(),
            progress_stage = 'done', progress_percent = 100,
            error = NULL, reason_code = NULL,
            result_url = p_result->>'result_url',
            result_path = p_result->>'result_path',
            provider = coalesce(p_result->>'provider', provider),
            model = p_result->>'model',
            cost_usd = (p_result->>'cost_usd')::numeric,
            metadata = p_result->'metadata'
        WHERE id = p_job_id AND status = 'processing' AND attempt = p_attempt;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END $function$;

-- last defined in 007_budgets_fair_share.sql
CREATE OR REPLACE FUNCTION public.defer_job_budget(p_job_id uuid, p_attempt integer, p_error text, p_until timestamp with time zone)
 RETURNS text
 LANGUAGE sql
AS $function$
    UPDATE ai_course_jobs SET status = 'failed', error = p_error, reason_code = 'budget_exhausted',
        next_attempt_at = p_until, worker_id = NULL, updated_at = now(), last_event_at = now(),
        progress_stage = 'budget_exhausted', progress_message = p_error
    WHERE id = p_job_id AND status = 'processing' AND attempt = p_attempt
    RETURNING status
$function$;

-- last defined in 002_queue_functions.sql
CREATE OR REPLACE FUNCTION public.fail_job(p_job_id uuid, p_job_table text, p_attempt integer, p_error text, p_reason_code text, p_retryable boolean DEFAULT true, p_backoff_base interval DEFAULT '00:00:30'::interval, p_backoff_cap interval DEFAULT '00:15:00'::interval, p_retry_after interval DEFAULT NULL::interval)
 RETURNS text
 LANGUAGE plpgsql
AS $function$
DECLARE new_status text;
BEGIN
    EXECUTE format(
        'UPDATE %I SET
            status = CASE WHEN NOT $4 OR retry_count >= max_retries THEN ''dead_letter'' ELSE ''failed'' END,
            error = CASE WHEN $4 AND retry_count >= max_retries
                         THEN $2 || format('' (retries: %%s/%%s)'', retry_count, max_retries) ELSE $2 END,
            reason_code = $3,
            completed_at = CASE WHEN NOT $4 OR retry_count >= max_retries THEN now() END,
            next_attempt_at = now() + greatest(least($6, $5 * power(2, least(retry_count, 30))) * (0.5 + random() / 2),
                                               coalesce($8, interval ''0'')),
            worker_id = NULL, updated_at = now(), last_event_at = now()
         WHERE id = $1 AND status = ''processing'' AND attempt = $7
         RETURNING status',
        ignite_check_job_table(p_job_table))
    INTO new_status
    USING p_job_id, p_error, p_reason_code, coalesce(p_retryable, true), p_backoff_base, p_backoff_cap, p_attempt,
          p_retry_after;
    RETURN new_status;
END $function$;

-- last defined in 007_budgets_fair_share.sql
CREATE OR REPLACE FUNCTION public.get_next_pending_job(p_worker_id text DEFAULT NULL::text, p_org_cap integer DEFAULT NULL::integer)
 RETURNS SETOF ai_course_jobs
 LANGUAGE plpgsql
AS $function$ BEGIN RETURN QUERY SELECT * FROM claim_course_jobs(1, p_worker_id, p_org_cap); END $function$;

-- last defined in 002_queue_functions.sql
CREATE OR REPLACE FUNCTION public.get_next_pending_media_job(p_worker_id text DEFAULT NULL::text)
 RETURNS SETOF ai_media_jobs
 LANGUAGE plpgsql
AS $function$ BEGIN RETURN QUERY SELECT * FROM claim_media_jobs(1, p_worker_id); END $function$;

-- last defined in 012_batched_progress.sql
CREATE OR REPLACE FUNCTION public.heartbeat_job_claims(p_job_table text, p_job_ids uuid[], p_attempts integer[])
 RETURNS SETOF uuid
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF ignite_check_job_table(p_job_table) = 'ai_course_jobs' THEN
        RETURN QUERY UPDATE ai_course_jobs j SET last_heartbeat = now(), updated_at = now()
            FROM unnest(p_job_ids, p_attempts) AS c(id, attempt)
            WHERE j.id = c.id AND j.attempt = c.attempt AND j.status = 'processing'
            RETURNING j.id;
    ELSE
        RETURN QUERY UPDATE ai_media_jobs j SET last_heartbeat = now(), updated_at = now()
            FROM unnest(p_job_ids, p_attempts) AS c(id, attempt)
            WHERE j.id = c.id AND j.attempt = c.attempt AND j.status = 'processing'
            RETURNING j.id;
    END IF;
END $function$;

-- last defined in 002_queue_functions.sql
CREATE OR REPLACE FUNCTION public.ignite_check_job_table(p_job_table text)
 RETURNS text
 LANGUAGE plpgsql
 IMMUTABLE
AS $function$
BEGIN
    IF p_job_table IS NULL OR p_job_table NOT IN ('ai_course_jobs', 'ai_media_jobs') THEN
        RAISE EXCEPTION 'invalid job table: % (expected ai_course_jobs or ai_media_jobs)', p_job_table
            USING ERRCODE = '22023';
    END IF;
    RETURN p_job_table;
END $function$;

-- last defined in 008_claim_liveness.sql
CREATE OR REPLACE FUNCTION public.ignite_free_release_limit()
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE
AS $function$ SELECT 3 $function$;

-- last defined in 008_claim_liveness.sql
CREATE OR REPLACE FUNCTION public.ignite_free_releases_left(p_job_id uuid)
 RETURNS boolean
 LANGUAGE sql
 STABLE
AS $function$
    SELECT count(*) < ignite_free_release_limit() FROM job_events
    WHERE job_id = p_job_id AND step = 'claim_released'
$function$;

-- last defined in 008_claim_liveness.sql
CREATE OR REPLACE FUNCTION public.keep_claims_alive(p_job_table text, p_job_ids uuid[], p_attempts integer[])
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE n int;
BEGIN
    IF ignite_check_job_table(p_job_table) = 'ai_course_jobs' THEN
        UPDATE ai_course_jobs j SET last_heartbeat = now()
        FROM unnest(p_job_ids, p_attempts) AS c(id, attempt)
        WHERE j.id = c.id AND j.attempt = c.attempt AND j.status = 'processing';
    ELSE
        UPDATE ai_media_jobs j SET last_heartbeat = now()
        FROM unnest(p_job_ids, p_attempts) AS c(id, attempt)
        WHERE j.id = c.id AND j.attempt = c.attempt AND j.status = 'processing';
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $function$;

-- last defined in 008_claim_liveness.sql
CREATE OR REPLACE FUNCTION public.mark_stale_jobs(p_timeout interval DEFAULT '00:05:00'::interval)
 RETURNS TABLE(job_id uuid, job_type text, stale_duration interval)
 LANGUAGE plpgsql
AS $function$
BEGIN
    RETURN QUERY
    WITH silent AS (
        SELECT j.id, 'ai_course_jobs'::text AS tbl, j.attempt, j.progress_stage = 'claimed'
                   AND ignite_free_releases_left(j.id) AS release, now() - j.last_heartbeat AS silent_for
        FROM ai_course_jobs j WHERE j.status = 'processing' AND j.last_heartbeat < now() - p_timeout
        FOR UPDATE SKIP LOCKED
    ), c AS (
        UPDATE ai_course_jobs j SET
            status = CASE WHEN s.release THEN 'pending' ELSE 'stale' END,
            error = CASE WHEN s.release THEN 'Claim released: its run never started a stage (heartbeat timeout)'
                         ELSE 'Job marked stale due to heartbeat timeout' END,
            progress_stage = CASE WHEN s.release THEN 'released' ELSE j.progress_stage END,
            reason_code = 'heartbeat_timeout', worker_id = NULL, next_attempt_at = now(), updated_at = now()
        FROM silent s WHERE j.id = s.id
        RETURNING j.id, s.tbl, s.attempt, s.release, s.silent_for
    ), msilent AS (
        SELECT j.id, 'ai_media_jobs'::text AS tbl, j.attempt, j.progress_stage = 'claimed'
                   AND ignite_free_releases_left(j.id) AS release, now() - j.last_heartbeat AS silent_for
        FROM ai_media_jobs j WHERE j.status = 'processing' AND j.last_heartbeat < now() - p_timeout
        FOR UPDATE SKIP LOCKED
    ), m AS (
        UPDATE ai_media_jobs j SET
            status = CASE WHEN s.release THEN 'pending' ELSE 'stale' END,
            error = CASE WHEN s.release THEN 'Claim released: its run never started a stage (heartbeat timeout)'
                         ELSE 'Job marked stale due to heartbeat timeout' END,
            progress_stage = CASE WHEN s.release THEN 'released' ELSE j.progress_stage END,
            reason_code = 'heartbeat_timeout', worker_id = NULL, next_attempt_at = now(), updated_at = now()
        FROM msilent s WHERE j.id = s.id
        RETURNING j.id, s.tbl, s.attempt, s.release, s.silent_for
    ), swept AS (
        SELECT * FROM c UNION ALL SELECT * FROM m
    ), journal AS (
        INSERT INTO job_events (job_id, job_table, attempt, seq, step, status, progress, message, meta)
        SELECT w.id, w.tbl, w.attempt,
               coalesce((SELECT max(e.seq) FROM job_events e WHERE e.job_id = w.id), 0) + 1,
               'claim_released', 'info', 0,
               'released without spending a retry (no stage ran): heartbeat timeout',
               jsonb_build_object('reason_code', 'heartbeat_timeout')
        FROM swept w WHERE w.release
    )
    SELECT w.id, w.tbl, w.silent_for FROM swept w;
END $function$;

-- last defined in 007_budgets_fair_share.sql
CREATE OR REPLACE FUNCTION public.move_to_dead_letter()
 RETURNS TABLE(job_id uuid, job_type text)
 LANGUAGE sql
AS $function$
    WITH c AS (
        UPDATE ai_course_jobs SET status = 'dead_letter', completed_at = now(), updated_at = now(),
            error = coalesce(error, 'retry budget spent') || format(' (retries: %s/%s)', retry_count, max_retries)
        WHERE status IN ('failed', 'stale') AND retry_count >= max_retries
          AND reason_code IS DISTINCT FROM 'budget_exhausted'
        RETURNING id, 'ai_course_jobs'::text
    ), m AS (
        UPDATE ai_media_jobs SET status = 'dead_letter', completed_at = now(), updated_at = now(),
            error = coalesce(error, 'retry budget spent') || format(' (retries: %s/%s)', retry_count, max_retries)
        WHERE status IN ('failed', 'stale') AND retry_count >= max_retries
        RETURNING id, 'ai_media_jobs'::text
    )
    SELECT * FROM c UNION ALL SELECT * FROM m
$function$;

-- last defined in 008_claim_liveness.sql
CREATE OR REPLACE FUNCTION public.reconcile_course_job_done(p_job_id uuid, p_attempt integer, p_result_path text, p_result jsonb DEFAULT '{}'::jsonb, p_written_at timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS boolean
 LANGUAGE plpgsql
AS $function$
BEGIN
    UPDATE ai_course_jobs SET
        status = 'done', result_path = p_result_path, completed_at = now(), updated_at = now(),
        progress_stage = 'done', progress_percent = 100,
        progress_message = 'marked done by reconciliation: course.json was written by this attempt',
        error = NULL, reason_code = NULL, worker_id = NULL,
        provider = coalesce(p_result->>'provider', provider),
        model = coalesce(p_result->>'model', model),
        tokens = coalesce((p_result->>'tokens')::int, tokens),
        cost_usd = coalesce((p_result->>'cost_usd')::numeric, cost_usd),
        generation_duration_ms = coalesce((p_result->>'generation_duration_ms')::int, generation_duration_ms),
        processing_duration_ms = CASE WHEN p_written_at >= started_at
                                      THEN least(extract(epoch FROM p_written_at - started_at) * 1000, 2147483647)::int
                                      ELSE processing_duration_ms END,
        summary = coalesce(p_result->'summary', summary)
    WHERE id = p_job_id AND attempt = p_attempt AND status IN ('processing', 'failed', 'stale');
    RETURN FOUND;
END $function$;

-- last defined in 008_claim_liveness.sql
CREATE OR REPLACE FUNCTION public.reconcile_media_job_done(p_job_id uuid, p_attempt integer, p_result_url text, p_result_path text)
 RETURNS boolean
 LANGUAGE plpgsql
AS $function$
BEGIN
    UPDATE ai_media_jobs SET
        status = 'done', result_url = p_result_url, result_path = p_result_path,
        completed_at = now(), updated_at = now(), progress_stage = 'done', progress_percent = 100,
        progress_message = 'marked done by reconciliation: the image is stored and attached',
        error = NULL, reason_code = NULL, worker_id = NULL
    WHERE id = p_job_id AND attempt = p_attempt AND status IN ('processing', 'failed', 'stale');
    RETURN FOUND;
END $function$;

-- last defined in 007_budgets_fair_share.sql
CREATE OR REPLACE FUNCTION public.record_org_usage(p_org uuid, p_calls bigint, p_tokens bigint, p_cost numeric)
 RETURNS void
 LANGUAGE sql
AS $function$
    INSERT INTO org_usage_daily AS u (organization_id, day, calls, tokens, cost_usd, unpriced_calls, unpriced_tokens)
    VALUES (p_org, (now() AT TIME ZONE 'UTC')::date, p_calls, p_tokens, coalesce(p_cost, 0),
            CASE WHEN p_cost IS NULL THEN p_calls ELSE 0 END, CASE WHEN p_cost IS NULL THEN p_tokens ELSE 0 END)
    ON CONFLICT (organization_id, day) DO UPDATE SET
        calls = u.calls + excluded.calls, tokens = u.tokens + excluded.tokens,
        cost_usd = u.cost_usd + excluded.cost_usd,
        unpriced_calls = u.unpriced_calls + excluded.unpriced_calls,
        unpriced_tokens = u.unpriced_tokens + excluded.unpriced_tokens,
        updated_at = now()
$function$;

-- last defined in 013_progress_refinements.sql
CREATE OR REPLACE FUNCTION public.refine_job_progress(p_job_table text, p_updates jsonb)
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE
    written int;
BEGIN
    IF ignite_check_job_table(p_job_table) = 'ai_course_jobs' THEN
        UPDATE ai_course_jobs j SET progress_percent = least(100, greatest(0, u.percent)),
            progress_message = u.message, last_heartbeat = now(), last_event_at = now(), updated_at = now()
        FROM jsonb_to_recordset(p_updates) AS u(id uuid, attempt int, stage text, percent int, message text)
        WHERE j.id = u.id AND j.attempt = u.attempt AND j.status = 'processing'
          AND j.progress_stage = u.stage AND coalesce(j.progress_percent, 0) <= u.percent;
    ELSE
        UPDATE ai_media_jobs j SET progress_percent = least(100, greatest(0, u.percent)),
            progress_message = u.message, last_heartbeat = now(), last_event_at = now(), updated_at = now()
        FROM jsonb_to_recordset(p_updates) AS u(id uuid, attempt int, stage text, percent int, message text)
        WHERE j.id = u.id AND j.attempt = u.attempt AND j.status = 'processing'
          AND j.progress_stage = u.stage AND coalesce(j.progress_percent, 0) <= u.percent;
    END IF;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $function$;

-- last defined in 008_claim_liveness.sql
CREATE OR REPLACE FUNCTION public.release_or_fail_claim(p_job_id uuid, p_job_table text, p_attempt integer, p_error text, p_reason_code text, p_backoff_base interval DEFAULT '00:00:30'::interval, p_backoff_cap interval DEFAULT '00:15:00'::interval)
 RETURNS text
 LANGUAGE plpgsql
AS $function$
DECLARE released boolean := false;
BEGIN
    IF ignite_check_job_table(p_job_table) = 'ai_course_jobs' THEN
        UPDATE ai_course_jobs SET status = 'pending', worker_id = NULL, next_attempt_at = now(),
            error = p_error, reason_code = p_reason_code, progress_stage = 'released', updated_at = now()
        WHERE id = p_job_id AND attempt = p_attempt AND status = 'processing' AND progress_stage = 'claimed'
          AND ignite_free_releases_left(p_job_id);
        released := FOUND;
    ELSE
        UPDATE ai_media_jobs SET status = 'pending', worker_id = NULL, next_attempt_at = now(),
            error = p_error, reason_code = p_reason_code, progress_stage = 'released', updated_at = now()
        WHERE id = p_job_id AND attempt = p_attempt AND status = 'processing' AND progress_stage = 'claimed'
          AND ignite_free_releases_left(p_job_id);
        released := FOUND;
    END IF;
    IF released THEN
        PERFORM add_job_event(p_job_id, p_job_table, p_attempt, 'claim_released', 'info', 0,
                              'released without spending a retry (no stage ran): ' || p_error,
                              jsonb_build_object('reason_code', p_reason_code));
        RETURN 'pending';
    END IF;
    RETURN fail_job(p_job_id, p_job_table, p_attempt, p_error, p_reason_code, true, p_backoff_base, p_backoff_cap);
END $function$;

-- last defined in 002_queue_functions.sql
CREATE OR REPLACE FUNCTION public.requeue_job(p_job_id uuid, p_job_table text)
 RETURNS boolean
 LANGUAGE plpgsql
AS $function$
DECLARE n int;
BEGIN
    EXECUTE format(
        'UPDATE %I SET status = ''pending'', retry_count = 0, error = NULL, reason_code = NULL,
            started_at = NULL, completed_at = NULL, last_heartbeat = NULL, worker_id = NULL,
            next_attempt_at = now(), updated_at = now(),
            progress_stage = ''requeued'', progress_percent = 0, progress_message = NULL
         WHERE id = $1 AND status IN (''failed'', ''dead_letter'', ''stale'')',
        ignite_check_job_table(p_job_table))
    USING p_job_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END $function$;

-- last defined in 009_materialization.sql
CREATE OR REPLACE FUNCTION public.set_job_run_id(p_job_id uuid, p_job_table text, p_attempt integer, p_run_id text)
 RETURNS boolean
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF ignite_check_job_table(p_job_table) = 'ai_course_jobs' THEN
        UPDATE ai_course_jobs SET dagster_run_id = p_run_id, updated_at = now()
        WHERE id = p_job_id AND attempt = p_attempt;
    ELSE
        UPDATE ai_media_jobs SET dagster_run_id = p_run_id, updated_at = now()
        WHERE id = p_job_id AND attempt = p_attempt;
    END IF;
    RETURN FOUND;
END $function$;

-- last defined in 012_batched_progress.sql
CREATE OR REPLACE FUNCTION public.stamp_course_run_claims(p_run_id text, p_job_ids uuid[], p_attempts integer[])
 RETURNS SETOF ai_course_jobs
 LANGUAGE sql
AS $function$
    WITH claims AS (SELECT * FROM unnest(p_job_ids, p_attempts) AS c(id, attempt)),
    stamped AS (
        UPDATE ai_course_jobs j SET dagster_run_id = p_run_id, updated_at = now()
        FROM claims c
        WHERE j.id = c.id AND j.attempt = c.attempt AND j.status = 'processing'
        RETURNING j.*)
    SELECT * FROM stamped
    UNION ALL
    SELECT j.* FROM ai_course_jobs j
    WHERE j.id IN (SELECT id FROM claims) AND j.id NOT IN (SELECT id FROM stamped)
$function$;

-- last defined in 012_batched_progress.sql
CREATE OR REPLACE FUNCTION public.start_job_stage(p_job_id uuid, p_job_table text, p_attempt integer, p_stage text, p_percent integer, p_message text DEFAULT NULL::text, p_events jsonb DEFAULT NULL::jsonb)
 RETURNS boolean
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF p_events IS NOT NULL AND jsonb_array_length(p_events) > 0 THEN
        PERFORM add_job_events(p_job_id, p_job_table, p_attempt, p_events);
    END IF;
    RETURN update_job_progress(p_job_id, p_job_table, p_attempt, p_stage, p_percent, p_message);
END $function$;

-- last defined in 002_queue_functions.sql
CREATE OR REPLACE FUNCTION public.update_job_heartbeat(p_job_id uuid, p_job_table text, p_attempt integer DEFAULT NULL::integer)
 RETURNS boolean
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF ignite_check_job_table(p_job_table) = 'ai_course_jobs' THEN
        UPDATE ai_course_jobs SET last_heartbeat = now(), updated_at = now()
        WHERE id = p_job_id AND status = 'processing' AND (p_attempt IS NULL OR attempt = p_attempt);
    ELSE
        UPDATE ai_media_jobs SET last_heartbeat = now(), updated_at = now()
        WHERE id = p_job_id AND status = 'processing' AND (p_attempt IS NULL OR attempt = p_attempt);
    END IF;
    RETURN FOUND;
END $function$;

-- last defined in 002_queue_functions.sql
CREATE OR REPLACE FUNCTION public.update_job_progress(p_job_id uuid, p_job_table text, p_attempt integer, p_stage text, p_percent integer, p_message text DEFAULT NULL::text)
 RETURNS boolean
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF ignite_check_job_table(p_job_table) = 'ai_course_jobs' THEN
        UPDATE ai_course_jobs SET progress_stage = p_stage, progress_percent = least(100, greatest(0, p_percent)),
            progress_message = p_message, last_heartbeat = now(), last_event_at = now(), updated_at = now()
        WHERE id = p_job_id AND status = 'processing' AND attempt = p_attempt;
    ELSE
        UPDATE ai_media_jobs SET progress_stage = p_stage, progress_percent = least(100, greatest(0, p_percent)),
            progress_message = p_message, last_heartbeat = now(), last_event_at = now(), updated_at = now()
        WHERE id = p_job_id AND status = 'processing' AND attempt = p_attempt;
    END IF;
    RETURN FOUND;
END $function$;
