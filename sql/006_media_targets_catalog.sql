-- Issue 14: item and option images on request, and a complete catalog row.
--
-- The course request (course/request.py) gained three fields; each is a column of its job, so the
-- worker, the reconciler and a replay all read what was accepted:
--   item_images  which items want a stimulus image or option images ('stimulus:3', 'options:all', ...)
--   tags         free catalog tags (the catalog adds derived ones: subject, grade band, locale, strategy)
--   visibility   org (its organization only) or public (listed to every caller)
-- The checks repeat the request's patterns: a row written by other means cannot hold what the API refuses.

ALTER TABLE ai_course_jobs
    ADD COLUMN item_images text[] NOT NULL DEFAULT '{}'
        CHECK (array_position(item_images, NULL) IS NULL
               AND cardinality(item_images) <= 200
               AND array_to_string(item_images, ',') ~ '^((stimulus|options):(all|0|[1-9][0-9]{0,3})(,|$))*$'),
    ADD COLUMN tags text[] NOT NULL DEFAULT '{}'
        CHECK (array_position(tags, NULL) IS NULL
               AND cardinality(tags) <= 20
               AND array_to_string(tags, ',') ~ '^([a-z0-9]+(-[a-z0-9]+)*(,|$))*$'),
    ADD COLUMN visibility text NOT NULL DEFAULT 'org' CHECK (visibility IN ('org', 'public'));

-- Catalog visibility is org | public (the request's values); the first schema said 'global'.
ALTER TABLE course_metadata DROP CONSTRAINT IF EXISTS course_metadata_visibility_check;
UPDATE course_metadata SET visibility = 'public' WHERE visibility = 'global';
ALTER TABLE course_metadata ADD CONSTRAINT course_metadata_visibility_check CHECK (visibility IN ('org', 'public'));

-- Catalog reads filter by tag (tags @> '["subject:addition"]') and by visibility across organizations.
CREATE INDEX course_metadata_tags ON course_metadata USING gin (tags jsonb_path_ops);
CREATE INDEX course_metadata_public ON course_metadata (updated_at DESC) WHERE visibility = 'public' AND deleted_at IS NULL;
