"""Dagster shell for media jobs: the generate_media job and its sensors (the media_complete check: defs/checks.py)."""
