-- 014: fair-share batch claims over several organizations read only the rows they can take (issue 23).
-- 011 read and locked, for every organization with claimable jobs, p_limit + 1 candidates, then kept the
-- p_limit first in fair order: a claim of 100 over three organizations locked 303 rows to take 100 and
-- ran at 0.62-0.75x the plain claim (bench/queue_bench.py). The fair order gives each organization the
-- slots after its jobs in flight (slot = busy + n), so the p_limit-th job of the order sits at a level
-- known before any candidate is read: the smallest L with sum(max(0, L - busy)) >= p_limit, over the
-- organizations' counts. Each organization now reads at most L - busy rows (none when it is busy beyond
-- the level), about p_limit in all. When that yields fewer than p_limit jobs although an organization may
-- hold rows that were not read (it gave all its share: others' locks, several jobs of one course; or it
-- had no share and those below the level had too little: their jobs wait out a backoff, their courses
-- are being generated), the call reads again as 011 did, so what it claims is what 011 would have
-- claimed. With a cap, the read is 011's (the cap, not the level, decides there). Nothing else changes:
-- same order, same locks, same claim.

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
END $$;
