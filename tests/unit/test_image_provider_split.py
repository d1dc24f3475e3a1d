"""Text and images from different providers, as settings: the image settings (IGNITE_IMAGE_BASE_URL,
IGNITE_IMAGE_API_KEY) fall back to the text provider's only when unset, and missing ones are named
together (each server receiving only its own calls is tests/integration/test_image_provider_split.py)."""

from __future__ import annotations

import pytest

from ignite_dagster.config import ConfigError, Settings, load_settings
from ignite_dagster.media.image_providers import MediaProviderError, OpenAIImageProvider
from tests.support.media import IMAGE_MODEL

TEXT_KEY, IMAGE_KEY = "text-key-0001", "image-key-0002"


def test_image_settings_fall_back_to_the_text_provider_only_when_unset():
    shared = load_settings({"OPENAI_API_KEY": TEXT_KEY, "OPENAI_BASE_URL": "http://text.example/v1",
                            "IGNITE_IMAGE_MODEL": IMAGE_MODEL})
    assert (shared.image_provider_key, shared.image_provider_base_url) == (TEXT_KEY, "http://text.example/v1")
    own = load_settings({"OPENAI_API_KEY": TEXT_KEY, "OPENAI_BASE_URL": "http://text.example/v1",
                         "IGNITE_IMAGE_API_KEY": IMAGE_KEY, "IGNITE_IMAGE_BASE_URL": "http://images.example/v1",
                         "IGNITE_IMAGE_MODEL": IMAGE_MODEL})
    assert (own.image_provider_key, own.image_provider_base_url) == (IMAGE_KEY, "http://images.example/v1")
    # images only: no text provider at all, and the text path stays unconfigured
    images_only = load_settings({"IGNITE_IMAGE_API_KEY": IMAGE_KEY, "IGNITE_IMAGE_MODEL": IMAGE_MODEL})
    assert images_only.images_configured and not images_only.model_configured


def test_missing_image_settings_are_named_together():
    with pytest.raises(ConfigError) as err:
        Settings().require_images()
    assert "IGNITE_IMAGE_API_KEY (or OPENAI_API_KEY)" in str(err.value) and "IGNITE_IMAGE_MODEL" in str(err.value)
    with pytest.raises(MediaProviderError) as coded:
        OpenAIImageProvider.from_settings(Settings(openai_api_key=TEXT_KEY))
    assert coded.value.reason_code == "model_not_configured" and "IGNITE_IMAGE_MODEL" in coded.value.message
