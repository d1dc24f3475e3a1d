-- 013: fill progress written for many jobs in one statement. During a model fill each answered call
-- moves the job's progress ("items 5/12", 20 % → 70 %); a run of ten courses answers about seventy
-- calls in a second, and a statement per answer, made from the one event loop every course's calls
-- share, held that loop up for each round trip. The run's progress writer (queue/progress.py) now
-- collects the latest refinement of every job and writes them all at once, as soon as the previous
-- write returns.
--
--   refine_job_progress  the latest progress of several jobs of one table, each fenced like
--                        update_job_progress (002): written only while the job is processing under the
--                        attempt that measured it, and, because the write may land a moment after the
--                        worker moved on, only within the stage it refines and never backwards in it.
--                        Returns how many rows it wrote.

-- p_updates: a JSON array of {id, attempt, stage, percent, message}
CREATE FUNCTION refine_job_progress(p_job_table text, p_updates jsonb) RETURNS int
LANGUAGE plpgsql AS $$
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
END $$;
