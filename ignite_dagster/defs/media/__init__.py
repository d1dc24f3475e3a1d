"""Dagster shell for media jobs: the generate_media job, its sensors and the media_complete check."""
