-- 011: the fair-share claim at the speed of a plain claim (issue 23). Same choice as 007/010 (fairness
-- order, org cap, budgets, retry budget, advisory locks, one course at a time); what changes is the work:
--
--   * Jobs in flight are counted through an index of processing rows by organization. 007 counted them
--     through the processing-by-course index (every processing row of the table, filtered) or, when the
--     planner preferred it, through (organization_id, created_at), which reads every finished row of the
--     organization too.
--   * They are counted only when the count can change the result: when there is a cap, or when more than
--     one organization has claimable rows (one organization's offset orders nothing). With a cap, an
--     organization at its cap is left out of the candidates: its rows are no longer read nor locked.
--   * Without a cap, the course try-locks are taken by one statement over the candidates, lazily in fair
--     order until p_limit are held (LIMIT over a filter pulls rows one at a time, so no course is locked
--     beyond the last one kept). 007 walked the candidates in a plpgsql loop, one lock and two array scans
--     per row.
--   * With a cap, an organization's jobs in flight are read again once per call, under its advisory
--     lock, not once per candidate: while we hold that lock no capped claimer claims in the organization,
--     so our own claims are the only change to follow (counted locally). Completions seen later only free
--     slots; the result is the one of a claim made just before them.
--
-- As before, the claim itself is claim_course_job_ids, a new statement whose snapshot sees every claim
-- committed before our course locks were taken; its form changes too (below).
--
-- Each index of processing rows now serves only the queries on its own column: its predicate names the
-- column (IS NOT NULL: always true for a processing row, whose claim set last_heartbeat, and for the NOT NULL
-- columns), and a query can use a partial index only when its conditions imply the predicate. Without
-- that, the planner, which cannot know for a generic plan how many processing rows an organization or a
-- course has, read every processing row through another processing index to count one organization's or
-- to probe one course (a filter over the whole index instead of an index condition). mark_stale_jobs
-- (last_heartbeat < …) and the course probes (course_id = …) imply their index's new predicate.
CREATE INDEX ai_course_jobs_processing_org ON ai_course_jobs (organization_id)
    WHERE status = 'processing' AND organization_id IS NOT NULL;
DROP INDEX ai_course_jobs_processing;
CREATE INDEX ai_course_jobs_processing ON ai_course_jobs (last_heartbeat)
    WHERE status = 'processing' AND last_heartbeat IS NOT NULL;
DROP INDEX ai_course_jobs_processing_course;
CREATE INDEX ai_course_jobs_processing_course ON ai_course_jobs (course_id)
    WHERE status = 'processing' AND course_id IS NOT NULL;

-- jit = off: see 007 (estimates for the per-organization scan trigger JIT for a sub-millisecond query).
-- plan_cache_mode = force_generic_plan: plpgsql plans a statement for its parameters (a custom plan) until a
-- generic plan looks no more expensive, and this one never did: each call planned the choice again, which
-- cost more than running it (a claim of one job took twice as long as a plain claim). The generic plan is
-- the one a custom plan would be anyway: per-organization probes of the partial indexes, nested loops.
CREATE OR REPLACE FUNCTION claim_course_jobs(p_limit int, p_worker_id text DEFAULT NULL, p_org_cap int DEFAULT NULL)
RETURNS SETOF ai_course_jobs LANGUAGE plpgsql SET jit = off SET plan_cache_mode = force_generic_plan AS $$
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
BEGIN
    IF p_limit IS NULL OR p_limit < 1 THEN
        RETURN;
    END IF;
    -- the candidates in fair order, rows locked SKIP LOCKED, no advisory lock taken yet; cand_first marks
    -- each course's first candidate
    SELECT coalesce(array_agg(f.id ORDER BY f.slot, f.priority, f.created_at), '{}'),
           coalesce(array_agg(f.organization_id ORDER BY f.slot, f.priority, f.created_at), '{}'),
           coalesce(array_agg(f.course_id ORDER BY f.slot, f.priority, f.created_at), '{}'),
           coalesce(array_agg(f.nth = 1 ORDER BY f.slot, f.priority, f.created_at), '{}')
      INTO cand_ids, cand_orgs, cand_courses, cand_first
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
        ), cand AS (
            SELECT x.id, x.organization_id, x.course_id, x.priority, x.created_at,
                   b.busy + row_number() OVER (PARTITION BY x.organization_id ORDER BY x.priority, x.created_at) AS slot
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
            WHERE p_org_cap IS NULL OR b.busy < p_org_cap
        )
        SELECT cand.*, row_number() OVER (PARTITION BY course_id ORDER BY slot, priority, created_at) AS nth
        FROM cand
    ) f;
    IF cardinality(cand_ids) = 0 THEN
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
    IF cardinality(ids) > 0 THEN
        -- a new statement: its snapshot sees every claim committed before our course locks were taken
        RETURN QUERY SELECT * FROM claim_course_job_ids(ids, p_worker_id);
    END IF;
END $$;

-- The claim of chosen course jobs, as 010 defined it (same columns, same conditions, rows in p_ids order).
-- Two changes of form, both because a generic plan (estimated for a 10-element p_ids and few processing
-- rows) read rows the claim never needed:
--   * the chosen ids are joined by primary key (unnest … WITH ORDINALITY, which also gives the order):
--     `id = ANY(p_ids) AND status IN (…)` was planned as a bitmap AND with a full scan of the claimable
--     index, every claimable row read to claim a few;
--   * the course re-check is a per-row probe of the processing-by-course index (OFFSET 0): as a plain NOT
--     EXISTS it was an anti-join that compared every chosen row with every processing row (a batch of 100
--     with 10,000 jobs in flight: a million comparisons).
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
        FROM unnest(p_ids) WITH ORDINALITY AS c(id, nr)
        WHERE j.id = c.id
          AND j.status IN ('pending', 'failed', 'stale')
          AND NOT EXISTS (SELECT 1 FROM ai_course_jobs p
                          WHERE p.course_id = j.course_id AND p.status = 'processing' OFFSET 0)
        RETURNING j AS job, c.nr
    ) SELECT (u.job).* FROM u ORDER BY u.nr;
END $$;
