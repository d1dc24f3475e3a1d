-- 011: the fair-share claim at the speed of a plain claim (issue 23). Same choice as 007/010 (fairness
-- order, org cap, budgets, retry budget, advisory locks, one course at a time); what changes is the work:
--
--   * Jobs in flight are counted through an index of processing rows by organization. 007 counted them
--     through the processing-by-course index (every processing row of the table, filtered) or, when the
--     planner preferred it, through (organization_id, created_at), which reads every finished row of the
--     organization too.
--   * They are counted only when the count can change the result: when there is a cap, or when more than
--     one organization has claimable rows (one organization's offset orders nothing). With a cap the
--     count stops at the cap: an organization at its cap is skipped whatever its count, so nothing past
--     the cap can matter; its rows are no longer read nor locked.
--   * Without a cap the choice is one statement: candidates in fair order, one per course, and the
--     course try-locks taken lazily in that order until p_limit are held (LIMIT over a filter pulls rows
--     one at a time, so no course is locked beyond the last one kept). 007 walked the candidates in a
--     plpgsql loop, one lock and two array scans per row.
--   * With a cap, an organization's jobs in flight are read again once per call, under its advisory
--     lock, not once per candidate: while we hold that lock no capped claimer claims in the organization,
--     so our own claims are the only change to follow (counted locally). Completions seen later only free
--     slots; the result is the one of a claim made just before them.
--
-- As before, the claim itself is claim_course_job_ids, a new statement whose snapshot sees every claim
-- committed before our course locks were taken.
--
-- The index's predicate names organization_id (always true: the column is NOT NULL) so that only queries
-- filtering by organization can use it: the course probe (course_id = … AND status = 'processing') cannot,
-- which keeps the planner from scanning every processing row for it when its statistics see few of them.
CREATE INDEX ai_course_jobs_processing_org ON ai_course_jobs (organization_id)
    WHERE status = 'processing' AND organization_id IS NOT NULL;

-- jit = off: see 007 (estimates for the per-organization scan trigger JIT for a sub-millisecond query).
-- plan_cache_mode = force_generic_plan: plpgsql plans a statement for its parameters (a custom plan) until a
-- generic plan looks no more expensive, and this one never did: each call planned the choice again, which
-- cost more than running it (a claim of one job took twice as long as a plain claim). The generic plan is
-- the one a custom plan would be anyway: per-organization probes of the partial indexes, nested loops.
CREATE OR REPLACE FUNCTION claim_course_jobs(p_limit int, p_worker_id text DEFAULT NULL, p_org_cap int DEFAULT NULL)
RETURNS SETOF ai_course_jobs LANGUAGE plpgsql SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    ids uuid[];
    cand_ids uuid[];
    cand_orgs uuid[];
    cand_courses text[];
    lock_orgs uuid[];
    room int[];
    courses text[] := '{}';
    k int;
    i int;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 THEN
        RETURN;
    END IF;
    IF p_org_cap IS NULL THEN
        ids := ARRAY(
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
            ), b AS MATERIALIZED (  -- jobs in flight, counted only when there are organizations to order
                SELECT o.org, CASE WHEN (SELECT count(*) FROM o) < 2 THEN 0
                                   ELSE (SELECT count(*) FROM ai_course_jobs p
                                         WHERE p.organization_id = o.org AND p.status = 'processing') END AS busy
                FROM o
            ), cand AS (
                SELECT x.id, x.organization_id, x.course_id, x.priority, x.created_at,
                       b.busy + row_number() OVER (PARTITION BY x.organization_id
                                                   ORDER BY x.priority, x.created_at) AS slot
                FROM b CROSS JOIN LATERAL (
                    SELECT j.id, j.organization_id, j.course_id, j.priority, j.created_at FROM ai_course_jobs j
                    WHERE j.organization_id = b.org
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
            ), firsts AS (  -- one job per course per call: its first in the fair order
                SELECT cand.*, row_number() OVER (PARTITION BY course_id ORDER BY slot, priority, created_at) AS nth
                FROM cand
            )
            SELECT s.id FROM (
                SELECT id, course_id FROM firsts WHERE nth = 1 ORDER BY slot, priority, created_at OFFSET 0
            ) s
            -- the same key as claim_course_for_materialization: both claim paths exclude each other
            WHERE pg_try_advisory_xact_lock(hashtextextended('ignite-course:' || s.course_id, 0))
            LIMIT p_limit);
    ELSE
        -- candidates in fair order, of organizations below the cap (no advisory lock taken yet)
        SELECT coalesce(array_agg(f.id ORDER BY f.slot, f.priority, f.created_at), '{}'),
               coalesce(array_agg(f.organization_id ORDER BY f.slot, f.priority, f.created_at), '{}'),
               coalesce(array_agg(f.course_id ORDER BY f.slot, f.priority, f.created_at), '{}')
          INTO cand_ids, cand_orgs, cand_courses
        FROM (
            WITH RECURSIVE orgs(org) AS (
                (SELECT organization_id FROM ai_course_jobs WHERE status IN ('pending', 'failed', 'stale')
                 ORDER BY organization_id LIMIT 1)
                UNION ALL
                SELECT (SELECT organization_id FROM ai_course_jobs
                        WHERE status IN ('pending', 'failed', 'stale') AND organization_id > orgs.org
                        ORDER BY organization_id LIMIT 1)
                FROM orgs WHERE orgs.org IS NOT NULL
            ), b AS MATERIALIZED (  -- jobs in flight, counted up to the cap
                SELECT orgs.org, (SELECT count(*) FROM (SELECT 1 FROM ai_course_jobs p
                                                        WHERE p.organization_id = orgs.org AND p.status = 'processing'
                                                        LIMIT p_org_cap) q) AS busy
                FROM orgs WHERE orgs.org IS NOT NULL
            ), cand AS (
                SELECT x.id, x.organization_id, x.course_id, x.priority, x.created_at,
                       b.busy + row_number() OVER (PARTITION BY x.organization_id
                                                   ORDER BY x.priority, x.created_at) AS slot
                FROM b CROSS JOIN LATERAL (
                    SELECT j.id, j.organization_id, j.course_id, j.priority, j.created_at FROM ai_course_jobs j
                    WHERE j.organization_id = b.org
                      AND j.status IN ('pending', 'failed', 'stale')
                      AND (j.status = 'pending' OR j.retry_count < j.max_retries OR j.reason_code = 'budget_exhausted')
                      AND j.next_attempt_at <= now()
                      AND NOT EXISTS (SELECT 1 FROM ai_course_jobs p
                                      WHERE p.course_id = j.course_id AND p.status = 'processing' OFFSET 0)
                    ORDER BY j.priority, j.created_at
                    LIMIT p_limit + 1
                    FOR UPDATE OF j SKIP LOCKED
                ) x
                WHERE b.busy < p_org_cap
            )
            SELECT * FROM cand
        ) f;
        IF cardinality(cand_ids) = 0 THEN
            RETURN;
        END IF;
        -- each candidate organization's lock, then (a new statement, a fresh snapshot) its room under the cap
        lock_orgs := ARRAY(SELECT DISTINCT u.org FROM unnest(cand_orgs) u(org)
                      WHERE pg_try_advisory_xact_lock(hashtextextended('ignite-org:' || u.org::text, 0)));
        SELECT coalesce(array_agg(p_org_cap - (SELECT count(*) FROM (SELECT 1 FROM ai_course_jobs q
                                                                     WHERE q.organization_id = u.org
                                                                       AND q.status = 'processing'
                                                                     LIMIT p_org_cap) n)
                                  ORDER BY u.nr), '{}')
          INTO room FROM unnest(lock_orgs) WITH ORDINALITY u(org, nr);
        ids := '{}';
        FOR i IN 1 .. cardinality(cand_ids) LOOP
            EXIT WHEN cardinality(ids) >= p_limit;
            k := array_position(lock_orgs, cand_orgs[i]);
            CONTINUE WHEN k IS NULL OR room[k] <= 0;
            CONTINUE WHEN cand_courses[i] = ANY(courses);  -- one job per course per call
            CONTINUE WHEN NOT pg_try_advisory_xact_lock(hashtextextended('ignite-course:' || cand_courses[i], 0));
            ids := ids || cand_ids[i];
            courses := courses || cand_courses[i];
            room[k] := room[k] - 1;
        END LOOP;
    END IF;
    IF cardinality(ids) > 0 THEN
        -- a new statement: its snapshot sees every claim committed before our course locks were taken
        RETURN QUERY SELECT * FROM claim_course_job_ids(ids, p_worker_id);
    END IF;
END $$;

-- The claim of chosen course jobs, as 010 defined it. Only the course re-check changes form: OFFSET 0 keeps
-- it a per-row probe of the processing-by-course index. As a plain NOT EXISTS the planner (which sees few
-- processing rows in its statistics) made it an anti-join that read every processing row once per chosen
-- row: a batch of 100 with 10,000 jobs in flight compared a million rows.
CREATE OR REPLACE FUNCTION claim_course_job_ids(p_ids uuid[], p_worker_id text) RETURNS SETOF ai_course_jobs
LANGUAGE plpgsql AS $$
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
        WHERE j.id = ANY(p_ids)
          AND j.status IN ('pending', 'failed', 'stale')
          AND NOT EXISTS (SELECT 1 FROM ai_course_jobs p
                          WHERE p.course_id = j.course_id AND p.status = 'processing' OFFSET 0)
        RETURNING j.*
    ) SELECT * FROM u ORDER BY array_position(p_ids, u.id);
END $$;
