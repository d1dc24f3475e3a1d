-- 003: reconciliation. A course job whose course.json was written by that job is done, whatever its
-- non-terminal state (the worker may have died between writing the file and marking the row).
CREATE FUNCTION reconcile_course_job_done(p_job_id uuid, p_result_path text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE n int;
BEGIN
    UPDATE ai_course_jobs SET
        status = 'done', result_path = p_result_path, completed_at = now(), updated_at = now(),
        progress_stage = 'done', progress_percent = 100,
        progress_message = 'marked done by reconciliation: course.json was written by this job',
        error = NULL, reason_code = NULL, worker_id = NULL
    WHERE id = p_job_id AND status IN ('processing', 'failed', 'stale');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END $$;
