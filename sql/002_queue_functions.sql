-- 002: the queue's SQL functions. This file is the contract of shared/design/queue.md; Python calls these
-- functions and never re-implements their logic as SELECT-then-UPDATE sequences.

-- Only the two job tables may be named by callers; everything else raises.
CREATE FUNCTION ignite_check_job_table(p_job_table text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_job_table IS NULL OR p_job_table NOT IN ('ai_course_jobs', 'ai_media_jobs') THEN
        RAISE EXCEPTION 'invalid job table: % (expected ai_course_jobs or ai_media_jobs)', p_job_table
            USING ERRCODE = '22023';
    END IF;
    RETURN p_job_table;
END $$;

-- Batch claims: best priority, then oldest; SKIP LOCKED so concurrent claimers never block or double-claim.
-- plpgsql (not LANGUAGE sql) so the statement's plan is cached per session: claiming is the hot path.
CREATE FUNCTION claim_course_jobs(p_limit int, p_worker_id text DEFAULT NULL) RETURNS SETOF ai_course_jobs
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY UPDATE ai_course_jobs j SET
        status = 'processing',
        attempt = j.attempt + 1,
        retry_count = CASE WHEN j.status IN ('failed', 'stale') THEN j.retry_count + 1 ELSE j.retry_count END,
        started_at = now(), last_heartbeat = now(), last_event_at = now(), updated_at = now(),
        completed_at = NULL, worker_id = p_worker_id,
        progress_stage = 'claimed', progress_percent = 0, progress_message = NULL
    FROM (
        SELECT id FROM ai_course_jobs
        WHERE status IN ('pending', 'failed', 'stale')
          AND (status = 'pending' OR retry_count < max_retries)
          AND next_attempt_at <= now()
        ORDER BY priority, created_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ) c
    WHERE j.id = c.id
    RETURNING j.*;
END $$;

CREATE FUNCTION claim_media_jobs(p_limit int, p_worker_id text DEFAULT NULL) RETURNS SETOF ai_media_jobs
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY UPDATE ai_media_jobs j SET
        status = 'processing',
        attempt = j.attempt + 1,
        retry_count = CASE WHEN j.status IN ('failed', 'stale') THEN j.retry_count + 1 ELSE j.retry_count END,
        started_at = now(), last_heartbeat = now(), last_event_at = now(), updated_at = now(),
        completed_at = NULL, worker_id = p_worker_id,
        progress_stage = 'claimed', progress_percent = 0, progress_message = NULL
    FROM (
        SELECT id FROM ai_media_jobs
        WHERE status IN ('pending', 'failed', 'stale')
          AND (status = 'pending' OR retry_count < max_retries)
          AND next_attempt_at <= now()
        ORDER BY priority, created_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ) c
    WHERE j.id = c.id
    RETURNING j.*;
END $$;

CREATE FUNCTION get_next_pending_job(p_worker_id text DEFAULT NULL) RETURNS SETOF ai_course_jobs
LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY SELECT * FROM claim_course_jobs(1, p_worker_id); END $$;

CREATE FUNCTION get_next_pending_media_job(p_worker_id text DEFAULT NULL) RETURNS SETOF ai_media_jobs
LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY SELECT * FROM claim_media_jobs(1, p_worker_id); END $$;

-- Fenced: true only while the row is processing (and holds p_attempt when given).
-- Static statements per table (not EXECUTE format): their plans are cached, and heartbeats are frequent.
CREATE FUNCTION update_job_heartbeat(p_job_id uuid, p_job_table text, p_attempt int DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF ignite_check_job_table(p_job_table) = 'ai_course_jobs' THEN
        UPDATE ai_course_jobs SET last_heartbeat = now(), updated_at = now()
        WHERE id = p_job_id AND status = 'processing' AND (p_attempt IS NULL OR attempt = p_attempt);
    ELSE
        UPDATE ai_media_jobs SET last_heartbeat = now(), updated_at = now()
        WHERE id = p_job_id AND status = 'processing' AND (p_attempt IS NULL OR attempt = p_attempt);
    END IF;
    RETURN FOUND;
END $$;

-- Progress is also a heartbeat. Fenced by attempt.
CREATE FUNCTION update_job_progress(p_job_id uuid, p_job_table text, p_attempt int, p_stage text,
                                    p_percent int, p_message text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF ignite_check_job_table(p_job_table) = 'ai_course_jobs' THEN
        UPDATE ai_course_jobs SET progress_stage = p_stage, progress_percent = least(100, greatest(0, p_percent)),
            progress_message = p_message, last_heartbeat = now(), last_event_at = now(), updated_at = now()
        WHERE id = p_job_id AND status = 'processing' AND attempt = p_attempt;
    ELSE
        UPDATE ai_media_jobs SET progress_stage = p_stage, progress_percent = least(100, greatest(0, p_percent)),
            progress_message = p_message, last_heartbeat = now(), last_event_at = now(), updated_at = now()
        WHERE id = p_job_id AND status = 'processing' AND attempt = p_attempt;
    END IF;
    RETURN FOUND;
END $$;

-- Completion, fenced by attempt. p_result carries the outcome and telemetry (keys named as the columns).
CREATE FUNCTION complete_job(p_job_id uuid, p_job_table text, p_attempt int, p_result jsonb DEFAULT '{}')
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE n int;
BEGIN
    PERFORM ignite_check_job_table(p_job_table);
    IF p_job_table = 'ai_course_jobs' THEN
        UPDATE ai_course_jobs SET
            status = 'done', completed_at = now(), updated_at = now(), last_event_at = now(),
            progress_stage = 'done', progress_percent = 100,
            progress_message = coalesce(p_result->>'progress_message', progress_message),
            error = NULL, reason_code = NULL,
            result_path = p_result->>'result_path',
            provider = p_result->>'provider',
            model = p_result->>'model',
            tokens = (p_result->>'tokens')::int,
            cost_usd = (p_result->>'cost_usd')::numeric,
            latency_ms = (p_result->>'latency_ms')::int,
            generation_duration_ms = (p_result->>'generation_duration_ms')::int,
            processing_duration_ms = (extract(epoch FROM now() - started_at) * 1000)::int,
            summary = p_result->'summary'
        WHERE id = p_job_id AND status = 'processing' AND attempt = p_attempt;
    ELSE
        UPDATE ai_media_jobs SET
            status = 'done', completed_at = now(), updated_at = now(), last_event_at = now(),
            progress_stage = 'done', progress_percent = 100,
            error = NULL, reason_code = NULL,
            result_url = p_result->>'result_url',
            result_path = p_result->>'result_path',
            provider = coalesce(p_result->>'provider', provider),
            model = p_result->>'model',
            cost_usd = (p_result->>'cost_usd')::numeric,
            metadata = p_result->'metadata'
        WHERE id = p_job_id AND status = 'processing' AND attempt = p_attempt;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END $$;

-- A worker loop's "ack and fetch next": complete one course job and claim the next in one transaction
-- (one commit per job instead of two). A refused completion raises (SQLSTATE IG409) and claims nothing.
CREATE FUNCTION complete_course_job_and_claim_next(p_job_id uuid, p_attempt int, p_result jsonb,
                                                   p_worker_id text DEFAULT NULL)
RETURNS SETOF ai_course_jobs LANGUAGE plpgsql AS $$
BEGIN
    IF NOT complete_job(p_job_id, 'ai_course_jobs', p_attempt, p_result) THEN
        RAISE EXCEPTION 'completion of job % attempt % refused: the claim is no longer held', p_job_id, p_attempt
            USING ERRCODE = 'IG409';
    END IF;
    RETURN QUERY SELECT * FROM claim_course_jobs(1, p_worker_id);
END $$;

-- Failure, fenced by attempt. Returns the new status ('failed' or 'dead_letter'), NULL when refused.
-- Retryable failures wait an exponential backoff with equal jitter: delay = min(cap, base * 2^retry_count),
-- then uniformly in [delay/2, delay], and never sooner than p_retry_after (an upstream Retry-After).
-- Not retryable, or retry budget spent: straight to dead_letter.
CREATE FUNCTION fail_job(p_job_id uuid, p_job_table text, p_attempt int, p_error text, p_reason_code text,
                         p_retryable boolean DEFAULT true,
                         p_backoff_base interval DEFAULT '30 seconds',
                         p_backoff_cap interval DEFAULT '15 minutes',
                         p_retry_after interval DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE new_status text;
BEGIN
    EXECUTE format(
        'UPDATE %I SET
            status = CASE WHEN NOT $4 OR retry_count >= max_retries THEN ''dead_letter'' ELSE ''failed'' END,
            error = CASE WHEN $4 AND retry_count >= max_retries
                         THEN $2 || format('' (retries: %%s/%%s)'', retry_count, max_retries) ELSE $2 END,
            reason_code = $3,
            completed_at = CASE WHEN NOT $4 OR retry_count >= max_retries THEN now() END,
            next_attempt_at = now() + greatest(least($6, $5 * power(2, least(retry_count, 30))) * (0.5 + random() / 2),
                                               coalesce($8, interval ''0'')),
            worker_id = NULL, updated_at = now(), last_event_at = now()
         WHERE id = $1 AND status = ''processing'' AND attempt = $7
         RETURNING status',
        ignite_check_job_table(p_job_table))
    INTO new_status
    USING p_job_id, p_error, p_reason_code, coalesce(p_retryable, true), p_backoff_base, p_backoff_cap, p_attempt,
          p_retry_after;
    RETURN new_status;
END $$;

CREATE FUNCTION mark_stale_jobs(p_timeout interval DEFAULT '5 minutes')
RETURNS TABLE(job_id uuid, job_type text, stale_duration interval)
LANGUAGE sql AS $$
    WITH c AS (
        UPDATE ai_course_jobs SET status = 'stale', error = 'Job marked stale due to heartbeat timeout',
            reason_code = 'heartbeat_timeout', worker_id = NULL, next_attempt_at = now(), updated_at = now()
        WHERE status = 'processing' AND last_heartbeat < now() - p_timeout
        RETURNING id, 'ai_course_jobs'::text, now() - last_heartbeat
    ), m AS (
        UPDATE ai_media_jobs SET status = 'stale', error = 'Job marked stale due to heartbeat timeout',
            reason_code = 'heartbeat_timeout', worker_id = NULL, next_attempt_at = now(), updated_at = now()
        WHERE status = 'processing' AND last_heartbeat < now() - p_timeout
        RETURNING id, 'ai_media_jobs'::text, now() - last_heartbeat
    )
    SELECT * FROM c UNION ALL SELECT * FROM m
$$;

CREATE FUNCTION move_to_dead_letter() RETURNS TABLE(job_id uuid, job_type text)
LANGUAGE sql AS $$
    WITH c AS (
        UPDATE ai_course_jobs SET status = 'dead_letter', completed_at = now(), updated_at = now(),
            error = coalesce(error, 'retry budget spent') || format(' (retries: %s/%s)', retry_count, max_retries)
        WHERE status IN ('failed', 'stale') AND retry_count >= max_retries
        RETURNING id, 'ai_course_jobs'::text
    ), m AS (
        UPDATE ai_media_jobs SET status = 'dead_letter', completed_at = now(), updated_at = now(),
            error = coalesce(error, 'retry budget spent') || format(' (retries: %s/%s)', retry_count, max_retries)
        WHERE status IN ('failed', 'stale') AND retry_count >= max_retries
        RETURNING id, 'ai_media_jobs'::text
    )
    SELECT * FROM c UNION ALL SELECT * FROM m
$$;

CREATE FUNCTION requeue_job(p_job_id uuid, p_job_table text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE n int;
BEGIN
    EXECUTE format(
        'UPDATE %I SET status = ''pending'', retry_count = 0, error = NULL, reason_code = NULL,
            started_at = NULL, completed_at = NULL, last_heartbeat = NULL, worker_id = NULL,
            next_attempt_at = now(), updated_at = now(),
            progress_stage = ''requeued'', progress_percent = 0, progress_message = NULL
         WHERE id = $1 AND status IN (''failed'', ''dead_letter'', ''stale'')',
        ignite_check_job_table(p_job_table))
    USING p_job_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END $$;

-- Best effort journal of a job's steps; seq orders events of one job.
CREATE FUNCTION add_job_event(p_job_id uuid, p_job_table text, p_attempt int, p_step text, p_status text,
                              p_progress int DEFAULT NULL, p_message text DEFAULT NULL, p_meta jsonb DEFAULT NULL)
RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO job_events (job_id, job_table, attempt, seq, step, status, progress, message, meta)
    SELECT p_job_id, ignite_check_job_table(p_job_table), p_attempt,
           coalesce((SELECT max(seq) FROM job_events WHERE job_id = p_job_id), 0) + 1,
           p_step, p_status, p_progress, p_message, p_meta
    RETURNING id
$$;
