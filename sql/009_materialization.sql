-- 009: courses materialized from the Dagster UI go through the queue like sensor work (issue 12).
--
-- dagster_run_id: the run that holds (or last held) the job's current attempt, recorded by the run
-- itself when it starts working the claim; the job-status route returns it with a UI link.
--
-- claim_course_for_materialization: an operator asked Dagster to (re)generate one course. Under a
-- transaction-scoped advisory lock on the course id:
--   * a job of that course already `processing` (a sensor run, another materialization) is returned
--     unchanged: the caller sees another worker id and skips the course, saying who holds it;
--   * otherwise the course's oldest claimable job (pending, failed or stale) is claimed as the queue's
--     claim functions would, ignoring next_attempt_at and the retry budget (an explicit operator action
--     is not a blind retry), and returned with worker_id = p_worker_id;
--   * nothing is returned when the course has no claimable job (the caller then enqueues one from the
--     course's last stored request and calls again).
ALTER TABLE ai_course_jobs ADD COLUMN dagster_run_id text CHECK (length(dagster_run_id) BETWEEN 1 AND 64);
ALTER TABLE ai_media_jobs ADD COLUMN dagster_run_id text CHECK (length(dagster_run_id) BETWEEN 1 AND 64);

CREATE FUNCTION claim_course_for_materialization(p_course_id text, p_worker_id text)
RETURNS SETOF ai_course_jobs LANGUAGE plpgsql AS $$
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
    RETURN QUERY UPDATE ai_course_jobs j SET
        status = 'processing',
        attempt = j.attempt + 1,
        retry_count = CASE WHEN j.status IN ('failed', 'stale') THEN least(j.retry_count + 1, j.max_retries)
                           ELSE j.retry_count END,
        started_at = now(), last_heartbeat = now(), last_event_at = now(), updated_at = now(),
        completed_at = NULL, worker_id = p_worker_id, dagster_run_id = NULL,
        progress_stage = 'claimed', progress_percent = 0, progress_message = NULL
    FROM (
        SELECT id FROM ai_course_jobs
        WHERE course_id = p_course_id AND status IN ('pending', 'failed', 'stale')
        ORDER BY priority, created_at
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) c
    WHERE j.id = c.id
    RETURNING j.*;
END $$;

-- Fenced by attempt: only the attempt a run holds is stamped with that run.
CREATE FUNCTION set_job_run_id(p_job_id uuid, p_job_table text, p_attempt int, p_run_id text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF ignite_check_job_table(p_job_table) = 'ai_course_jobs' THEN
        UPDATE ai_course_jobs SET dagster_run_id = p_run_id, updated_at = now()
        WHERE id = p_job_id AND attempt = p_attempt;
    ELSE
        UPDATE ai_media_jobs SET dagster_run_id = p_run_id, updated_at = now()
        WHERE id = p_job_id AND attempt = p_attempt;
    END IF;
    RETURN FOUND;
END $$;

-- The queued media jobs of one course, for a course_media materialization from the UI (same claim as
-- claim_media_jobs, restricted to the course; an operator's explicit action ignores next_attempt_at).
CREATE FUNCTION claim_course_media_jobs(p_course_id text, p_worker_id text, p_limit int DEFAULT 100)
RETURNS SETOF ai_media_jobs LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY UPDATE ai_media_jobs j SET
        status = 'processing',
        attempt = j.attempt + 1,
        retry_count = CASE WHEN j.status IN ('failed', 'stale') THEN least(j.retry_count + 1, j.max_retries)
                           ELSE j.retry_count END,
        started_at = now(), last_heartbeat = now(), last_event_at = now(), updated_at = now(),
        completed_at = NULL, worker_id = p_worker_id, dagster_run_id = NULL,
        progress_stage = 'claimed', progress_percent = 0, progress_message = NULL
    FROM (
        SELECT id FROM ai_media_jobs
        WHERE course_id = p_course_id AND status IN ('pending', 'failed', 'stale')
        ORDER BY priority, created_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ) c
    WHERE j.id = c.id
    RETURNING j.*;
END $$;
