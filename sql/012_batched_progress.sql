-- 012: a course's own round trips batched. A deterministic pack course takes 14–27 ms to generate; the
-- worker used to spend about twenty statements on it around that: per stage a fenced progress write when
-- it started and a job_events row when it ended, the claimed event on its own, and per claim of a run a
-- read and a stamp of the run's id. These functions let one statement carry what used to take several,
-- with the same rows written in the same order:
--
--   add_job_events       several job_events rows of one job in one statement, numbered in the order given
--                        (add_job_event, 002, stays for single events: the API's requeue, media)
--   start_job_stage      a stage transition: the events not yet written (the previous stage's success,
--                        the claimed event) and then the new stage's fenced progress, as
--                        update_job_progress (002) writes it; returns whether the attempt still holds the
--                        job, so a lost claim still stops the work before the stage runs
--   stamp_course_run_claims  a run's course claims in one statement: every claimed job's row, with the
--                        run's id stamped (as set_job_run_id, 009, does one by one) on each that is still
--                        processing under the claimed attempt
--   heartbeat_job_claims a run's claims heartbeated in one statement (as update_job_heartbeat, 002, does
--                        one by one); returns the ids still held, so the run marks the others lost
--
-- An event is best effort in the client (a failed add_job_event is logged, never raised into the job).
-- In start_job_stage the events share the statement with the progress write; nothing in them can fail
-- that a progress write would survive (the table and the statuses are the client's own constants), so
-- the statement either writes both or fails as the progress write alone would have.

-- p_events: a JSON array of {step, status, progress, message, meta}; returns how many rows were written.
CREATE FUNCTION add_job_events(p_job_id uuid, p_job_table text, p_attempt int, p_events jsonb) RETURNS int
LANGUAGE sql AS $$
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
$$;

CREATE FUNCTION start_job_stage(p_job_id uuid, p_job_table text, p_attempt int, p_stage text, p_percent int,
                                p_message text DEFAULT NULL, p_events jsonb DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF p_events IS NOT NULL AND jsonb_array_length(p_events) > 0 THEN
        PERFORM add_job_events(p_job_id, p_job_table, p_attempt, p_events);
    END IF;
    RETURN update_job_progress(p_job_id, p_job_table, p_attempt, p_stage, p_percent, p_message);
END $$;

CREATE FUNCTION stamp_course_run_claims(p_run_id text, p_job_ids uuid[], p_attempts int[])
RETURNS SETOF ai_course_jobs LANGUAGE sql AS $$
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
$$;

CREATE FUNCTION heartbeat_job_claims(p_job_table text, p_job_ids uuid[], p_attempts int[]) RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
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
END $$;
