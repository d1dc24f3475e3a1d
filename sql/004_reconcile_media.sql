-- 004: media reconciliation. A media job that is not done, but whose image (object named after the job)
-- is stored and attached in course.json, is done: the worker died between attaching and completing.
CREATE FUNCTION reconcile_media_job_done(p_job_id uuid, p_result_url text, p_result_path text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ai_media_jobs SET
        status = 'done', result_url = p_result_url, result_path = p_result_path,
        completed_at = now(), updated_at = now(), progress_stage = 'done', progress_percent = 100,
        progress_message = 'marked done by reconciliation: the image is stored and attached',
        error = NULL, reason_code = NULL, worker_id = NULL
    WHERE id = p_job_id AND status IN ('processing', 'failed', 'stale');
    RETURN FOUND;
END $$;
