-- 008: claims are alive from the moment they are made; releasing claims that never ran a stage; the
-- reconcilers fenced by attempt.
--
-- A sensor claims a job (progress_stage = 'claimed', last_heartbeat = now()) and asks for a run; the run
-- may wait in Dagster's run queue before its process starts heartbeating. keep_claims_alive is how the
-- daemon (sensor tick) vouches for claims of queued and starting runs. A claim that dies before any stage
-- ran (progress_stage still 'claimed') spent no work: it is released back to 'pending' without spending a
-- retry, at most ignite_free_release_limit() times per job (then it counts like any failure, so a job
-- whose runs never start still reaches dead_letter). Every release is a job_events row
-- (step 'claim_released'), which is also the count.

CREATE FUNCTION ignite_free_release_limit() RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 3 $$;

-- Heartbeat a batch of claims, each fenced by its attempt; returns how many are still held.
CREATE FUNCTION keep_claims_alive(p_job_table text, p_job_ids uuid[], p_attempts int[]) RETURNS int
LANGUAGE plpgsql AS $$
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
END $$;

CREATE FUNCTION ignite_free_releases_left(p_job_id uuid) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT count(*) < ignite_free_release_limit() FROM job_events
    WHERE job_id = p_job_id AND step = 'claim_released'
$$;

-- The claim p_attempt of a job whose run died or was canceled. Fenced by attempt. No stage ran yet (and
-- free releases are left): back to pending, retry_count untouched, returns 'pending'. Otherwise fail_job
-- (retryable failures wait their backoff; a spent budget dead-letters), returning its status; NULL when
-- the attempt no longer holds the job.
CREATE FUNCTION release_or_fail_claim(p_job_id uuid, p_job_table text, p_attempt int, p_error text,
                                      p_reason_code text,
                                      p_backoff_base interval DEFAULT '30 seconds',
                                      p_backoff_cap interval DEFAULT '15 minutes')
RETURNS text LANGUAGE plpgsql AS $$
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
END $$;

-- Stale detection. A processing job without heartbeat past the timeout: released to pending when its
-- attempt never ran a stage (its run never started: nothing was lost, no retry spent), otherwise stale.
-- Same signature and rows as 002's version (released jobs are listed too, they were detected).
CREATE OR REPLACE FUNCTION mark_stale_jobs(p_timeout interval DEFAULT '5 minutes')
RETURNS TABLE(job_id uuid, job_type text, stale_duration interval)
LANGUAGE plpgsql AS $$
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
END $$;

-- Reconciliation fenced by attempt: only the attempt that wrote course.json (generation.attempt) is
-- completed, with the telemetry the file and the stored summary carry. The unfenced 003 function goes.
DROP FUNCTION reconcile_course_job_done(uuid, text);
CREATE FUNCTION reconcile_course_job_done(p_job_id uuid, p_attempt int, p_result_path text,
                                          p_result jsonb DEFAULT '{}', p_written_at timestamptz DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
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
END $$;

DROP FUNCTION reconcile_media_job_done(uuid, text, text);
CREATE FUNCTION reconcile_media_job_done(p_job_id uuid, p_attempt int, p_result_url text, p_result_path text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ai_media_jobs SET
        status = 'done', result_url = p_result_url, result_path = p_result_path,
        completed_at = now(), updated_at = now(), progress_stage = 'done', progress_percent = 100,
        progress_message = 'marked done by reconciliation: the image is stored and attached',
        error = NULL, reason_code = NULL, worker_id = NULL
    WHERE id = p_job_id AND attempt = p_attempt AND status IN ('processing', 'failed', 'stale');
    RETURN FOUND;
END $$;
