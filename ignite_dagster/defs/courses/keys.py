"""Names the course assets, their checks and the stage ops share, kept apart from the asset definitions
so that every module of ``defs/`` can name an asset without importing the code that computes it."""

from dagster import AssetKey

COURSE_CONTENT = AssetKey("course_content")
COURSE_METADATA = AssetKey("course_metadata")
COURSE_MEDIA = AssetKey("course_media")

# The Dagster pool of the ops that call the model provider (fill, repair, image generation).
MODEL_POOL = "model_provider"
