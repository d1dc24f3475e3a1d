"""Image providers behind one small interface, and the failure policy that feeds the queue's backoff.

Decisions, and why:

* **One interface** (``ImageProvider.generate(prompt, style=, size=) -> GeneratedImage``): the worker,
  the live API path and the tests only see bytes, a sniffed content type and telemetry, so a second
  provider (another API, a local model) is one class, not a change in the worker.
* **No retries inside the provider.** The SDK client is built with ``max_retries=0`` and one request is
  sent per call. A retryable failure (429, 5xx, timeout, connection error) becomes the *job's*
  ``fail(retryable=True)``: the queue's backoff spaces attempts, every attempt is visible as a job
  event, and a run never sits in a sleep holding a run slot. (The course filler retries inside the run
  because a course makes many calls; a media job makes one.)
* **Reason codes** are the ones the API already maps to HTTP statuses (``api/routes.py``); whether the
  queue retries one is ``queue/retry.py``'s ``MEDIA_RETRYABLE``:

  ==========================================================  ==================================
  429 ``insufficient_quota``                                  ``provider_quota``, not retryable
  429 otherwise                                               ``provider_rate_limited``, retryable
  408, 409, 5xx, timeout, connection error                    ``provider_unavailable``, retryable
  ``provider_timeout`` (a deadline passed)                    retryable, as for a course
  400 ``content_policy_violation`` / ``moderation_blocked``   ``content_refused``, not retryable
  other 400 / 404 / 422 (bad size, unknown model …)           ``invalid_request``, not retryable
  401 / 403                                                   ``provider_auth``, not retryable
  answer without base64 data, or bytes not PNG/JPEG/WebP      ``provider_error``, not retryable
  IGNITE_IMAGE_MODEL / image key unset                        ``model_not_configured``
  ==========================================================  ==================================

  Quota and auth failures are not retried because no wait cures them: retrying would only multiply
  requests against an account that cannot pay for them.
* **Cost** comes from the price table (``IGNITE_LLM_PRICES``, key ``image``: USD per image). A model
  without a price has an *unknown* cost (``None``), never 0, as for text models.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from ignite_dagster.budget.retry_after import retry_after_of
from ignite_dagster.config import ConfigError, Settings
from ignite_dagster.queue.retry import MEDIA_RETRYABLE

PROVIDER_NAME = "openai"

# Error codes the OpenAI image API uses for safety-system rejections (DALL·E and gpt-image models).
POLICY_CODES = frozenset({"content_policy_violation", "moderation_blocked", "image_generation_user_error_moderation"})

# Which reasons the queue retries for a media job: the one retry policy (queue/retry.py), which also retries
# ``provider_timeout`` (a timed-out image is worth another attempt after the backoff).
RETRYABLE_REASONS = MEDIA_RETRYABLE


class MediaProviderError(RuntimeError):
    """A coded provider failure; ``retryable`` tells the queue whether another attempt can succeed."""

    def __init__(self, reason_code: str, message: str, *, status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.reason_code in RETRYABLE_REASONS


# --- content type --------------------------------------------------------------------------------------

_MAGIC: tuple[tuple[str, str], ...] = (("image/png", "png"), ("image/jpeg", "jpg"), ("image/webp", "webp"))


def sniff_image(data: bytes) -> tuple[str, str]:
    """(content type, file extension) from the bytes' magic number.

    Why sniff instead of trusting the request's ``output_format``: OpenAI-compatible servers differ in
    what they honour, and a wrong ``Content-Type`` on a public object breaks browsers silently.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _MAGIC[0]
    if data.startswith(b"\xff\xd8\xff"):
        return _MAGIC[1]
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _MAGIC[2]
    raise MediaProviderError("provider_error", f"provider returned {len(data)} bytes that are not PNG, JPEG or WebP "
                             f"(starts {data[:8]!r})")


# --- interface -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    content_type: str
    ext: str
    provider: str
    model: str
    size: str
    cost_usd: Decimal | None
    latency_ms: int
    revised_prompt: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return len(self.data)


class ImageProvider(Protocol):
    name: str
    model: str

    def generate(self, prompt: str, *, style: str | None = None, size: str | None = None,
                 quality: str | None = None) -> GeneratedImage:
        """One image for ``prompt`` now, or MediaProviderError with a reason code. ``quality`` is the
        images API's own parameter (omitted when None: the model's default)."""
        ...


def image_cost(prices: dict[str, dict[str, Decimal]], model: str, n: int = 1) -> Decimal | None:
    """USD for ``n`` images of ``model`` from the ``image`` price key; None (unknown) when not priced."""
    entry = prices.get(model) or {}
    price = entry.get("image")
    return None if price is None else price * n


def compose_prompt(prompt: str, style: str | None) -> str:
    """The style is free text (the API's ``style`` only knows vivid/natural on one model): append it."""
    prompt = prompt.strip()
    return f"{prompt}\n\nStyle: {style.strip()}" if style and style.strip() else prompt


# --- OpenAI ----------------------------------------------------------------------------------------------


class OpenAIImageProvider:
    """``images.generate`` through the ``openai`` SDK (any OpenAI-compatible server via base_url)."""

    name = PROVIDER_NAME

    def __init__(self, *, api_key: str, model: str, base_url: str | None = None, size: str = "1024x1024",
                 timeout_seconds: float = 120.0, prices: dict[str, dict[str, Decimal]] | None = None):
        import openai

        self.model = model
        self.size = size
        self.prices = prices or {}
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_seconds, max_retries=0)

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIImageProvider:
        """The image provider's own endpoint and key (IGNITE_IMAGE_BASE_URL / IGNITE_IMAGE_API_KEY, each
        falling back to the text provider's OPENAI_BASE_URL / OPENAI_API_KEY only when unset). Fails
        loudly, naming every missing variable, when images are not configured."""
        try:
            settings.require_images()
        except ConfigError as exc:
            raise MediaProviderError("model_not_configured", str(exc)) from exc
        key, model = settings.image_provider_key, settings.image_model
        assert key and model  # narrowed by require_images()
        from ignite_dagster.budget import image_budget

        provider = cls(api_key=key, model=model, base_url=settings.image_provider_base_url,
                       size=settings.image_size, timeout_seconds=settings.image_timeout_seconds,
                       prices=settings.prices())
        provider.budget = image_budget(settings)  # None unless IGNITE_IMAGES_PER_MINUTE is set
        return provider

    def close(self) -> None:
        self._client.close()

    def _params(self, prompt: str, size: str, quality: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.model, "prompt": prompt, "n": 1, "size": size}
        if quality is not None:
            params["quality"] = quality
        # DALL·E models answer with a URL unless asked for base64; gpt-image models always send base64
        # and reject the parameter.
        if self.model.startswith("dall-e"):
            params["response_format"] = "b64_json"
        return params

    def generate(self, prompt: str, *, style: str | None = None, size: str | None = None,
                 quality: str | None = None) -> GeneratedImage:
        size = size or self.size
        t0 = time.monotonic()
        from ignite_dagster.budget import guarded

        try:
            # the shared images-per-minute budget (IGNITE_IMAGES_PER_MINUTE); a 429 pauses it everywhere
            with guarded(getattr(self, "budget", None)):
                response = self._client.images.generate(**self._params(compose_prompt(prompt, style), size, quality))
        except Exception as exc:  # noqa: BLE001 - classified below; unknown errors re-raised
            raise classify_openai_error(exc) from exc
        latency_ms = int((time.monotonic() - t0) * 1000)
        data = getattr(response, "data", None) or []
        b64 = getattr(data[0], "b64_json", None) if data else None
        if not b64:
            raise MediaProviderError("provider_error", "the image answer carried no base64 image data")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MediaProviderError("provider_error", f"the image answer's base64 data is invalid: {exc}") from exc
        content_type, ext = sniff_image(raw)
        usage = getattr(response, "usage", None)
        return GeneratedImage(
            data=raw, content_type=content_type, ext=ext, provider=self.name, model=self.model, size=size,
            cost_usd=image_cost(self.prices, self.model), latency_ms=latency_ms,
            revised_prompt=getattr(data[0], "revised_prompt", None),
            usage=usage.model_dump() if hasattr(usage, "model_dump") else {},
        )


def classify_openai_error(exc: BaseException) -> BaseException:
    """Map an SDK exception to a MediaProviderError (see the module table); anything else passes through."""
    import openai

    if isinstance(exc, MediaProviderError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return MediaProviderError("provider_unavailable", f"image request timed out: {exc}")
    if isinstance(exc, openai.APIConnectionError):
        return MediaProviderError("provider_unavailable", f"image provider unreachable: {exc}")
    if not isinstance(exc, openai.APIStatusError):
        return exc
    status, code, kind = exc.status_code, exc.code or "", exc.type or ""
    message = f"HTTP {status} {code or kind}: {exc.message}"[:1500]
    if status == 429:
        if "insufficient_quota" in (code, kind):
            return MediaProviderError("provider_quota", message, status=status)
        return MediaProviderError("provider_rate_limited", message, status=status, retry_after=retry_after_of(exc))
    if status in (408, 409) or status >= 500:
        return MediaProviderError("provider_unavailable", message, status=status, retry_after=retry_after_of(exc))
    if code in POLICY_CODES or kind in POLICY_CODES or "safety system" in (exc.message or "").lower():
        return MediaProviderError("content_refused", message, status=status)
    if status in (401, 403):
        return MediaProviderError("provider_auth", message, status=status)
    return MediaProviderError("invalid_request", message, status=status)


def provider_from_settings(settings: Settings) -> ImageProvider:
    """The configured image provider (only OpenAI-compatible today)."""
    return OpenAIImageProvider.from_settings(settings)
