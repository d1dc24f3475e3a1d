-- Every field a course request accepts is stored on its job (course/request.py is the one definition):
-- locale and groups_count were validated, answered 202 and then dropped. Notes and study text stay in
-- object storage (special_requests.json); the request fingerprint — sha256 of the canonical request,
-- those texts included — is what an idempotent replay compares, so the same Idempotency-Key with
-- different content is a conflict, not a silent replay.
--
-- There is no enqueue function to replace: the client inserts the row itself (it stores the special
-- requests first, under the job's id, inside the same transaction-scoped advisory lock). The claim and
-- completion functions return SETOF ai_course_jobs, so they carry the new columns as they are.
-- PostgreSQL's `$` (without the newline-sensitive flag) matches only at the end of the string.

ALTER TABLE ai_course_jobs
    ADD COLUMN locale text NOT NULL DEFAULT 'en'
        CHECK (locale ~ '^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?$'),
    ADD COLUMN groups_count int CHECK (groups_count BETWEEN 1 AND 12),
    ADD COLUMN request_fingerprint text CHECK (request_fingerprint ~ '^[0-9a-f]{64}$');
