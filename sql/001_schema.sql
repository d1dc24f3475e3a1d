-- 001: tables of the course factory (see shared/design/queue.md and course-format.md).
-- Plain SQL, applied once by `ignite db migrate` under an advisory lock.

CREATE TABLE organizations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    slug        text UNIQUE CHECK (slug ~ '^[a-z0-9-]{1,64}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- organization_id NULL = superadmin (everywhere)
CREATE TABLE user_roles (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL,
    organization_id uuid REFERENCES organizations(id) ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('superadmin', 'org_admin', 'editor', 'viewer')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'superadmin') = (organization_id IS NULL))
);
CREATE UNIQUE INDEX user_roles_unique ON user_roles (user_id, coalesce(organization_id, '00000000-0000-0000-0000-000000000000'::uuid), role);

CREATE TABLE ai_course_jobs (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id         uuid NOT NULL REFERENCES organizations(id),
    course_id               text NOT NULL CHECK (course_id ~ '^[a-z0-9-]{1,64}$'),
    subject                 text CHECK (length(subject) BETWEEN 1 AND 200),
    grade_band              text CHECK (length(grade_band) BETWEEN 1 AND 32),
    grade                   text CHECK (length(grade) BETWEEN 1 AND 32),
    items_per_group         int NOT NULL DEFAULT 12 CHECK (items_per_group BETWEEN 1 AND 100),
    levels_count            int CHECK (levels_count BETWEEN 1 AND 20),
    study_texts_count       int CHECK (study_texts_count BETWEEN 0 AND 20),
    mode                    text NOT NULL DEFAULT 'options' CHECK (mode IN ('options', 'numeric')),
    strategy                text CHECK (strategy IN ('deterministic', 'llm')),
    has_special_requests    boolean NOT NULL DEFAULT false,
    wants_images            boolean NOT NULL DEFAULT false,
    status                  text NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'processing', 'done', 'failed', 'stale', 'dead_letter')),
    priority                int NOT NULL DEFAULT 100,
    attempt                 int NOT NULL DEFAULT 0,
    retry_count             int NOT NULL DEFAULT 0,
    max_retries             int NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    next_attempt_at         timestamptz NOT NULL DEFAULT now(),
    idempotency_key         text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    created_by              uuid,
    requested_by            text,
    worker_id               text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    started_at              timestamptz,
    completed_at            timestamptz,
    last_heartbeat          timestamptz,
    last_event_at           timestamptz,
    progress_stage          text,
    progress_percent        int CHECK (progress_percent BETWEEN 0 AND 100),
    progress_message        text,
    result_path             text,
    error                   text,
    reason_code             text,
    provider                text,
    model                   text,
    tokens                  int,
    cost_usd                numeric(10, 4),
    latency_ms              int,
    processing_duration_ms  int,
    generation_duration_ms  int,
    summary                 jsonb,
    UNIQUE (organization_id, idempotency_key)
);
-- Claiming reads only claimable rows: a partial index keeps it fast however many finished rows exist.
CREATE INDEX ai_course_jobs_claimable ON ai_course_jobs (priority, created_at)
    WHERE status IN ('pending', 'failed', 'stale');
CREATE INDEX ai_course_jobs_processing ON ai_course_jobs (last_heartbeat) WHERE status = 'processing';
CREATE INDEX ai_course_jobs_org_created ON ai_course_jobs (organization_id, created_at DESC);
CREATE INDEX ai_course_jobs_course ON ai_course_jobs (course_id);

CREATE TABLE ai_media_jobs (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id     uuid NOT NULL REFERENCES organizations(id),
    course_id           text NOT NULL CHECK (course_id ~ '^[a-z0-9-]{1,64}$'),
    course_job_id       uuid,
    media_type          text NOT NULL DEFAULT 'image' CHECK (media_type IN ('image', 'audio', 'video')),
    prompt              text NOT NULL CHECK (length(prompt) BETWEEN 1 AND 4000),
    style               text,
    provider            text,
    target_ref          jsonb NOT NULL,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'processing', 'done', 'failed', 'stale', 'dead_letter')),
    priority            int NOT NULL DEFAULT 100,
    attempt             int NOT NULL DEFAULT 0,
    retry_count         int NOT NULL DEFAULT 0,
    max_retries         int NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    idempotency_key     text,
    created_by          uuid,
    requested_by        text,
    worker_id           text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    completed_at        timestamptz,
    last_heartbeat      timestamptz,
    last_event_at       timestamptz,
    progress_stage      text,
    progress_percent    int CHECK (progress_percent BETWEEN 0 AND 100),
    progress_message    text,
    result_url          text,
    result_path         text,
    error               text,
    reason_code         text,
    model               text,
    metadata            jsonb,
    cost_usd            numeric(10, 4),
    CHECK (target_ref ? 'type' AND target_ref->>'type' IN ('study_text', 'item_stimulus', 'item_option'))
);
CREATE INDEX ai_media_jobs_claimable ON ai_media_jobs (priority, created_at)
    WHERE status IN ('pending', 'failed', 'stale');
CREATE INDEX ai_media_jobs_processing ON ai_media_jobs (last_heartbeat) WHERE status = 'processing';
CREATE INDEX ai_media_jobs_course ON ai_media_jobs (course_id);
-- Unique only while live: a finished job's key may be used again for a new image of the same target.
CREATE UNIQUE INDEX ai_media_jobs_idempotency ON ai_media_jobs (organization_id, idempotency_key)
    WHERE status IN ('pending', 'processing') AND idempotency_key IS NOT NULL;

CREATE TABLE job_events (
    id          bigserial PRIMARY KEY,
    job_id      uuid NOT NULL,
    job_table   text NOT NULL CHECK (job_table IN ('ai_course_jobs', 'ai_media_jobs')),
    attempt     int,
    seq         int NOT NULL,
    step        text NOT NULL,
    status      text NOT NULL CHECK (status IN ('info', 'success', 'error')),
    progress    int,
    message     text,
    meta        jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_events_job ON job_events (job_id, seq);

CREATE TABLE course_metadata (
    id               text PRIMARY KEY CHECK (id ~ '^[a-z0-9-]{1,64}$'),
    organization_id  uuid NOT NULL REFERENCES organizations(id),
    title            text NOT NULL,
    subject          text,
    grade_band       text,
    visibility       text NOT NULL DEFAULT 'org' CHECK (visibility IN ('org', 'global')),
    tags             jsonb NOT NULL DEFAULT '[]'::jsonb,
    tag_ids          uuid[] NOT NULL DEFAULT '{}',
    content_version  int NOT NULL DEFAULT 0,
    etag             int NOT NULL DEFAULT 0,
    item_count       int NOT NULL DEFAULT 0,
    storage_path     text NOT NULL,
    latest_job_id    uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    archived_at      timestamptz,
    deleted_at       timestamptz
);
CREATE INDEX course_metadata_org ON course_metadata (organization_id);

CREATE TABLE course_versions (
    id                  bigserial PRIMARY KEY,
    course_id           text NOT NULL REFERENCES course_metadata(id),
    version             int NOT NULL CHECK (version >= 1),
    storage_path        text NOT NULL,
    content_sha256      text NOT NULL,
    published_by        uuid,
    published_by_agent  text,
    published_at        timestamptz NOT NULL DEFAULT now(),
    change_summary      text,
    metadata_snapshot   jsonb,
    UNIQUE (course_id, version)
);

CREATE SEQUENCE catalog_version_seq;
CREATE TABLE catalog_updates (
    id               bigserial PRIMARY KEY,
    course_id        text NOT NULL,
    organization_id  uuid NOT NULL,
    action           text NOT NULL CHECK (action IN ('added', 'updated', 'deleted')),
    catalog_version  bigint NOT NULL DEFAULT nextval('catalog_version_seq'),
    course_title     text,
    job_id           uuid,
    course_version   int,
    created_at       timestamptz NOT NULL DEFAULT now()
);
-- "never duplicated for one job": one row per generating job, one per published version.
CREATE UNIQUE INDEX catalog_updates_job ON catalog_updates (job_id) WHERE job_id IS NOT NULL;
CREATE UNIQUE INDEX catalog_updates_version ON catalog_updates (course_id, course_version)
    WHERE course_version IS NOT NULL;
