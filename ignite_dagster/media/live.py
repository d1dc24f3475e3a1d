"""The synchronous ("live") path: one image now, stored under ``media-library/tmp/ai-generated/``.

Used by the ``ai-generate-media`` route for an editor who wants an image while editing; nothing is
queued or attached to a course. Failures keep the provider's reason code (``MediaProviderError``) so
the API answers with the matching HTTP status; nothing is retried here (the caller is waiting, and a
retry loop would hold an HTTP worker for minutes).
"""

from __future__ import annotations

import uuid
from typing import Any

from ignite_dagster.config import Settings
from ignite_dagster.media.image_providers import ImageProvider, provider_from_settings
from ignite_dagster.storage.base import ObjectStore
from ignite_dagster.storage.keys import live_media_key


def generate_live_image(
    settings: Settings,
    store: ObjectStore,
    prompt: str,
    style: str | None = None,
    size: str | None = None,
    quality: str | None = None,
    *,
    provider: ImageProvider | None = None,
) -> dict[str, Any]:
    """Generate, store and return ``{url, path, contentType, bytes, model, provider, size, costUsd, latencyMs}``.

    Raises MediaProviderError (``model_not_configured`` when the image key — IGNITE_IMAGE_API_KEY, else
    OPENAI_API_KEY — or IGNITE_IMAGE_MODEL is unset, or the provider's reason code). The provider is the
    media jobs' one (``provider_from_settings``): same endpoint, key and model.
    """
    owned = provider is None
    provider = provider or provider_from_settings(settings)
    try:
        image = provider.generate(prompt, style=style, size=size, quality=quality)
    finally:
        if owned and hasattr(provider, "close"):
            provider.close()
    key = live_media_key(uuid.uuid4(), image.ext)
    store.put(key, image.data, content_type=image.content_type)
    return {
        "url": store.public_url(key),
        "path": key,
        "contentType": image.content_type,
        "bytes": len(image.data),
        "model": image.model,
        "provider": image.provider,
        "size": image.size,
        "quality": quality,
        "costUsd": str(image.cost_usd) if image.cost_usd is not None else None,
        "latencyMs": image.latency_ms,
        "revisedPrompt": image.revised_prompt,
    }
