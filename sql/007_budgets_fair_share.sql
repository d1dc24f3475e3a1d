-- 007: shared provider budgets, fair share between organizations, per-organization daily usage, and an
-- honest "cost unknown" on jobs.
--
-- Why Postgres (and not Redis or an in-process limiter): every deployment and every fresh machine
-- (embedded pgserver) already runs it, and all the processes that call a provider (runs, daemons, the
-- API) already hold connections to it. A call takes one short transaction on one budget row locked
-- FOR UPDATE; a process that dies leaves leases that simply expire.

-- ---------------------------------------------------------------------------------------------------
-- Provider budgets: one row per provider endpoint + model ("text:<base url>|<model>", "image:…").
-- The limits are passed by every caller (they come from its settings) and stored for the operator.
CREATE TABLE provider_budgets (
    budget_key      text PRIMARY KEY,
    rpm             int CHECK (rpm > 0),
    tpm             bigint CHECK (tpm > 0),
    max_in_flight   int CHECK (max_in_flight > 0),
    paused_until    timestamptz,
    pause_reason    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per granted request: the sliding window (granted_at within the window) and the in-flight
-- leases (released_at IS NULL and not expired). ``tokens`` is the reservation until the call reports
-- its usage, then the reported figure.
CREATE TABLE provider_budget_grants (
    id           bigserial PRIMARY KEY,
    budget_key   text NOT NULL REFERENCES provider_budgets(budget_key) ON DELETE CASCADE,
    granted_at   timestamptz NOT NULL,
    tokens       bigint NOT NULL CHECK (tokens >= 0),
    expires_at   timestamptz NOT NULL,
    released_at  timestamptz,
    holder       text
);
CREATE INDEX provider_budget_grants_window ON provider_budget_grants (budget_key, granted_at);

-- Take one request (and p_tokens) from a budget, or say how long to wait. One short transaction: the
-- budget row is locked FOR UPDATE, so concurrent callers in any process are serialised on it; the time
-- is read after the lock (clock_timestamp), so waiting for the lock never makes a grant look older.
-- Returns (grant_id, wait_seconds): a grant id and 0, or NULL and the seconds after which to ask again.
-- A request whose reservation alone exceeds the TPM limit is granted into an empty window (it could
-- never be granted otherwise; the provider will judge it).
CREATE FUNCTION budget_acquire(p_key text, p_rpm int, p_tpm bigint, p_max_in_flight int, p_tokens bigint,
                               p_lease_seconds double precision, p_holder text DEFAULT NULL,
                               p_window_seconds double precision DEFAULT 60)
RETURNS TABLE(grant_id bigint, wait_seconds double precision)
LANGUAGE plpgsql AS $$
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
END $$;

-- The call returned (or failed): end its in-flight lease and replace the reservation by the tokens the
-- provider reported (NULL: unknown, the reservation stays counted).
CREATE FUNCTION budget_release(p_grant_id bigint, p_tokens bigint DEFAULT NULL) RETURNS void
LANGUAGE sql AS $$
    UPDATE provider_budget_grants SET released_at = clock_timestamp(), tokens = coalesce(greatest(0, p_tokens), tokens)
    WHERE id = p_grant_id
$$;

-- A 429 with Retry-After pauses the whole budget: every process's next budget_acquire waits it out.
CREATE FUNCTION budget_pause(p_key text, p_seconds double precision, p_reason text DEFAULT NULL) RETURNS timestamptz
LANGUAGE sql AS $$
    INSERT INTO provider_budgets AS b (budget_key, paused_until, pause_reason, updated_at)
    VALUES (p_key, clock_timestamp() + p_seconds * interval '1 second', p_reason, now())
    ON CONFLICT (budget_key) DO UPDATE SET
        paused_until = greatest(coalesce(b.paused_until, '-infinity'), excluded.paused_until),
        pause_reason = excluded.pause_reason, updated_at = now()
    RETURNING paused_until
$$;

-- ---------------------------------------------------------------------------------------------------
-- Per-organization daily usage (UTC days): what every attempt of every job spent, added when the
-- attempt ends (failed or done). ``unpriced_tokens`` counts tokens whose cost is unknown, so a
-- day's cost_usd is a lower bound exactly when unpriced_tokens > 0 (or unpriced_calls > 0).
CREATE TABLE org_usage_daily (
    organization_id  uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    day              date NOT NULL,
    calls            bigint NOT NULL DEFAULT 0,
    tokens           bigint NOT NULL DEFAULT 0,
    cost_usd         numeric(14, 6) NOT NULL DEFAULT 0,
    unpriced_calls   bigint NOT NULL DEFAULT 0,
    unpriced_tokens  bigint NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, day)
);

CREATE FUNCTION record_org_usage(p_org uuid, p_calls bigint, p_tokens bigint, p_cost numeric) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO org_usage_daily AS u (organization_id, day, calls, tokens, cost_usd, unpriced_calls, unpriced_tokens)
    VALUES (p_org, (now() AT TIME ZONE 'UTC')::date, p_calls, p_tokens, coalesce(p_cost, 0),
            CASE WHEN p_cost IS NULL THEN p_calls ELSE 0 END, CASE WHEN p_cost IS NULL THEN p_tokens ELSE 0 END)
    ON CONFLICT (organization_id, day) DO UPDATE SET
        calls = u.calls + excluded.calls, tokens = u.tokens + excluded.tokens,
        cost_usd = u.cost_usd + excluded.cost_usd,
        unpriced_calls = u.unpriced_calls + excluded.unpriced_calls,
        unpriced_tokens = u.unpriced_tokens + excluded.unpriced_tokens,
        updated_at = now()
$$;

-- ---------------------------------------------------------------------------------------------------
-- Honest cost on the job: cost_known is false once any attempt spent tokens without a price (cost_usd
-- is then NULL, never a partial sum); NULL while nothing was spent.
ALTER TABLE ai_course_jobs ADD COLUMN cost_known boolean;

-- budget_exhausted: the organization's daily budget is spent. The job is failed with that reason until
-- p_until (the next UTC day) without spending a retry: the claim below does not count it, the
-- dead-letter sweep leaves it alone. Fenced by attempt; returns the new status or NULL when refused.
CREATE FUNCTION defer_job_budget(p_job_id uuid, p_attempt int, p_error text, p_until timestamptz) RETURNS text
LANGUAGE sql AS $$
    UPDATE ai_course_jobs SET status = 'failed', error = p_error, reason_code = 'budget_exhausted',
        next_attempt_at = p_until, worker_id = NULL, updated_at = now(), last_event_at = now(),
        progress_stage = 'budget_exhausted', progress_message = p_error
    WHERE id = p_job_id AND status = 'processing' AND attempt = p_attempt
    RETURNING status
$$;

CREATE OR REPLACE FUNCTION move_to_dead_letter() RETURNS TABLE(job_id uuid, job_type text)
LANGUAGE sql AS $$
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
$$;

-- ---------------------------------------------------------------------------------------------------
-- Fair share. Among claimable jobs, the organization with the fewest jobs in `processing` goes first
-- (counting the ones this call already claimed), then priority, then the oldest; an organization at
-- p_org_cap jobs in flight is skipped; a job whose course already has a job in `processing` is never
-- claimed (one course is never generated by two paths at once).
--
-- How: a loose index scan finds each organization with claimable rows; per organization its best
-- p_limit + 1 rows (one spare) are read through the (organization_id, priority, created_at) index and locked
-- SKIP LOCKED; candidates are ranked by (in flight + rank within the organization). Each kept candidate
-- first takes a transaction-scoped advisory try-lock on its course (and on its organization when a cap
-- is set): a concurrent claimer of the same course or organization skips it. The claim itself is a new
-- statement with a fresh snapshot, so its re-check sees any claim committed before the lock: one UPDATE
-- for all kept candidates without a cap, one UPDATE per candidate with a cap (it re-counts in flight).
CREATE INDEX ai_course_jobs_org_claimable ON ai_course_jobs (organization_id, priority, created_at)
    WHERE status IN ('pending', 'failed', 'stale');
CREATE INDEX ai_course_jobs_processing_course ON ai_course_jobs (course_id) WHERE status = 'processing';

DROP FUNCTION get_next_pending_job(text);
DROP FUNCTION claim_course_jobs(int, text);

-- jit = off: the planner's estimate for the per-organization scan (its LIMIT is a parameter) is high
-- enough to trigger JIT compilation, ~20 ms per claim for a query that runs in well under 1 ms.
CREATE FUNCTION claim_course_jobs(p_limit int, p_worker_id text DEFAULT NULL, p_org_cap int DEFAULT NULL)
RETURNS SETOF ai_course_jobs LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    c record;
    claimed int := 0;
    r ai_course_jobs;
    ids uuid[] := '{}';
    courses text[] := '{}';
BEGIN
    IF p_limit IS NULL OR p_limit < 1 THEN
        RETURN;
    END IF;
    FOR c IN
        WITH RECURSIVE orgs(org) AS (
            (SELECT organization_id FROM ai_course_jobs WHERE status IN ('pending', 'failed', 'stale')
             ORDER BY organization_id LIMIT 1)
            UNION ALL
            SELECT (SELECT organization_id FROM ai_course_jobs
                    WHERE status IN ('pending', 'failed', 'stale') AND organization_id > orgs.org
                    ORDER BY organization_id LIMIT 1)
            FROM orgs WHERE orgs.org IS NOT NULL
        ), o AS MATERIALIZED (  -- jobs in flight, counted once per organization (few rows: processing only)
            SELECT orgs.org, (SELECT count(*) FROM ai_course_jobs p
                              WHERE p.organization_id = orgs.org AND p.status = 'processing') AS busy
            FROM orgs WHERE orgs.org IS NOT NULL
        ), cand AS (
            SELECT x.id, x.organization_id, x.course_id, x.priority, x.created_at, o.busy
            FROM o CROSS JOIN LATERAL (
                SELECT j.id, j.organization_id, j.course_id, j.priority, j.created_at FROM ai_course_jobs j
                WHERE j.organization_id = o.org
                  AND j.status IN ('pending', 'failed', 'stale')
                  AND (j.status = 'pending' OR j.retry_count < j.max_retries OR j.reason_code = 'budget_exhausted')
                  AND j.next_attempt_at <= now()
                  -- OFFSET 0 keeps this a per-row index probe (an anti-join would read every processing row)
                  AND NOT EXISTS (SELECT 1 FROM ai_course_jobs p
                                  WHERE p.course_id = j.course_id AND p.status = 'processing' OFFSET 0)
                ORDER BY j.priority, j.created_at
                LIMIT p_limit + 1
                FOR UPDATE OF j SKIP LOCKED
            ) x
        )
        SELECT cand.*, busy + row_number() OVER (PARTITION BY organization_id ORDER BY priority, created_at) AS slot
        FROM cand
        ORDER BY slot, priority, created_at
    LOOP
        EXIT WHEN claimed >= p_limit;
        CONTINUE WHEN c.course_id = ANY(courses);  -- one job per course per call
        -- the same key as 009's claim_course_for_materialization: both claim paths exclude each other
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(hashtextextended('ignite-course:' || c.course_id, 0));
        IF p_org_cap IS NULL THEN
            -- no cap to re-count: collect, then claim them all with one UPDATE below
            ids := ids || c.id;
            courses := courses || c.course_id;
            claimed := claimed + 1;
            CONTINUE;
        END IF;
        IF p_org_cap IS NOT NULL THEN
            CONTINUE WHEN NOT pg_try_advisory_xact_lock(hashtextextended('ignite-org:' || c.organization_id::text, 0));
        END IF;
        UPDATE ai_course_jobs j SET
            status = 'processing',
            attempt = j.attempt + 1,
            retry_count = CASE WHEN j.status IN ('failed', 'stale') AND j.reason_code IS DISTINCT FROM 'budget_exhausted'
                               THEN j.retry_count + 1 ELSE j.retry_count END,
            started_at = now(), last_heartbeat = now(), last_event_at = now(), updated_at = now(),
            completed_at = NULL, worker_id = p_worker_id,
            progress_stage = 'claimed', progress_percent = 0, progress_message = NULL
        WHERE j.id = c.id
          AND j.status IN ('pending', 'failed', 'stale')
          AND NOT EXISTS (SELECT 1 FROM ai_course_jobs p WHERE p.course_id = c.course_id AND p.status = 'processing')
          AND (p_org_cap IS NULL OR (SELECT count(*) FROM ai_course_jobs q
                                     WHERE q.organization_id = c.organization_id AND q.status = 'processing') < p_org_cap)
        RETURNING j.* INTO r;
        IF FOUND THEN
            claimed := claimed + 1;
            courses := courses || c.course_id;
            RETURN NEXT r;
        END IF;
    END LOOP;
    IF p_org_cap IS NULL AND claimed > 0 THEN
        -- a new statement: its snapshot sees every claim committed before our course locks were taken
        RETURN QUERY WITH u AS (
            UPDATE ai_course_jobs j SET
                status = 'processing',
                attempt = j.attempt + 1,
                retry_count = CASE WHEN j.status IN ('failed', 'stale') AND j.reason_code IS DISTINCT FROM 'budget_exhausted'
                                   THEN j.retry_count + 1 ELSE j.retry_count END,
                started_at = now(), last_heartbeat = now(), last_event_at = now(), updated_at = now(),
                completed_at = NULL, worker_id = p_worker_id,
                progress_stage = 'claimed', progress_percent = 0, progress_message = NULL
            WHERE j.id = ANY(ids)
              AND j.status IN ('pending', 'failed', 'stale')
              AND NOT EXISTS (SELECT 1 FROM ai_course_jobs p WHERE p.course_id = j.course_id AND p.status = 'processing')
            RETURNING j.*
        ) SELECT * FROM u ORDER BY array_position(ids, u.id);
    END IF;
END $$;

CREATE FUNCTION get_next_pending_job(p_worker_id text DEFAULT NULL, p_org_cap int DEFAULT NULL)
RETURNS SETOF ai_course_jobs
LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY SELECT * FROM claim_course_jobs(1, p_worker_id, p_org_cap); END $$;

-- the worker loop's ack + fetch next, now through the fair claim
CREATE OR REPLACE FUNCTION complete_course_job_and_claim_next(p_job_id uuid, p_attempt int, p_result jsonb,
                                                              p_worker_id text DEFAULT NULL)
RETURNS SETOF ai_course_jobs LANGUAGE plpgsql AS $$
BEGIN
    IF NOT complete_job(p_job_id, 'ai_course_jobs', p_attempt, p_result) THEN
        RAISE EXCEPTION 'completion of job % attempt % refused: the claim is no longer held', p_job_id, p_attempt
            USING ERRCODE = 'IG409';
    END IF;
    RETURN QUERY SELECT * FROM claim_course_jobs(1, p_worker_id, NULL);
END $$;
