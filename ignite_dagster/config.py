"""Settings from the environment.

Every setting is read in one place so docs/configuration.md (``settings_markdown``) has a single
source. Required settings are checked per purpose (``require``) and *all* missing names are reported
together in one error: an operator fixing a deployment should see the whole list at once, not one name per
restart.
Nothing here invents a secret, a token or an organization id: a value is either configured or missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """A required setting is missing or malformed; the message names every offending variable."""

    def __init__(self, purpose: str, missing: list[str], invalid: list[str] | None = None):
        self.purpose = purpose
        self.missing = missing
        self.invalid = invalid or []
        parts = []
        if missing:
            parts.append("missing: " + ", ".join(missing))
        if self.invalid:
            parts.append("invalid: " + "; ".join(self.invalid))
        super().__init__(f"configuration for {purpose} is incomplete ({' | '.join(parts)})")


def _env_field(env: str, default: Any = None, doc: str = "", secret: bool = False, kind: str = "str"):
    return field(default=default, metadata={"env": env, "doc": doc, "secret": secret, "kind": kind})


@dataclass(frozen=True)
class Settings:
    """All runtime settings; see ``settings_table()`` for the documented list."""

    env: str = _env_field("IGNITE_ENV", "dev", "dev | test | production. Production never falls back to embedded services.")
    home: Path = _env_field("IGNITE_HOME", REPO_ROOT / ".ignite", "Folder for embedded Postgres, local storage and the Dagster home in dev/demo/test.", kind="path")
    database_url: str | None = _env_field("DATABASE_URL", None, "Postgres URL for queues, metadata and Dagster storage. Unset in dev: embedded Postgres under IGNITE_HOME.", secret=True)
    db_pool_max: int = _env_field("IGNITE_DB_POOL_MAX", 10, "Max connections per process pool (count it in the connection budget).", kind="int")

    storage_backend: str = _env_field("STORAGE_BACKEND", "local", "local | s3")
    storage_root: Path | None = _env_field("IGNITE_STORAGE_ROOT", None, "Root folder of the local storage backend (default IGNITE_HOME/storage outside production).", kind="path")
    s3_endpoint_url: str | None = _env_field("S3_ENDPOINT_URL", None, "S3 endpoint (Supabase Storage S3, MinIO, AWS). Unset = AWS default.")
    s3_region: str | None = _env_field("S3_REGION", None, "S3 region (required with STORAGE_BACKEND=s3).")
    s3_access_key_id: str | None = _env_field("S3_ACCESS_KEY_ID", None, "S3 access key id.", secret=True)
    s3_secret_access_key: str | None = _env_field("S3_SECRET_ACCESS_KEY", None, "S3 secret key.", secret=True)
    s3_bucket_prefix: str = _env_field("S3_BUCKET_PREFIX", "", "Prefix added to the two bucket names (courses, media-library).")
    public_media_base_url: str | None = _env_field("PUBLIC_MEDIA_BASE_URL", None, "Base URL under which stored media is public, e.g. https://x.supabase.co/storage/v1/object/public. Default for local storage: file:// URL of the storage root.")

    openai_api_key: str | None = _env_field("OPENAI_API_KEY", None, "Key for the OpenAI-compatible provider. Unset: only deterministic packs run.", secret=True)
    openai_base_url: str | None = _env_field("OPENAI_BASE_URL", None, "Base URL of any OpenAI-compatible server (unset = api.openai.com).")
    text_model: str | None = _env_field("IGNITE_TEXT_MODEL", None, "Model for skeleton fill and repair (required when a model path runs).")
    image_model: str | None = _env_field("IGNITE_IMAGE_MODEL", None, "Image model for media jobs and ai-generate-media (required when images are generated).")
    image_base_url: str | None = _env_field("IGNITE_IMAGE_BASE_URL", None, "Base URL of the OpenAI-compatible image server (/v1/images/generations). Unset: OPENAI_BASE_URL, the text provider's.")
    image_api_key: str | None = _env_field("IGNITE_IMAGE_API_KEY", None, "Key for the image server. Unset: OPENAI_API_KEY, the text provider's.", secret=True)
    image_size: str = _env_field("IGNITE_IMAGE_SIZE", "1024x1024", "Image size passed to the image API.")
    image_timeout_seconds: float = _env_field("IGNITE_IMAGE_TIMEOUT_SECONDS", 180.0, "Per-request timeout for image generation (slower than text).", kind="float")
    llm_concurrency: int = _env_field("IGNITE_LLM_CONCURRENCY", 8, "Max model calls in flight per run process (all courses of a run share it); capped by the slots the server reports (llama.cpp /props).", kind="int")
    llm_timeout_seconds: float = _env_field("IGNITE_LLM_TIMEOUT_SECONDS", 60.0, "Longest silence of a model call: with streaming, between two chunks (a slow model that keeps writing is never cut off); without, the whole answer. A timed-out call is retried once, then fails as provider_timeout.", kind="float")
    llm_stream: bool = _env_field("IGNITE_LLM_STREAM", True, "Stream model answers (true/false); turn off only for a server that cannot stream.", kind="bool")
    llm_fill_deadline_seconds: float = _env_field("IGNITE_LLM_FILL_DEADLINE_SECONDS", 900.0, "Deadline for one course's whole fill (or one repair round), counted from its first call and extended while its streams keep sending tokens; past it the stage fails as provider_timeout. 0 = none.", kind="float")
    llm_schema_drop: str | None = _env_field("IGNITE_LLM_SCHEMA_DROP", None, "Comma list of JSON-schema keywords to leave out of structured outputs for a server that rejects them (pattern, minItems, maxItems, minimum, maximum, enum); the validator still checks every rule.")
    llm_max_retries: int = _env_field("IGNITE_LLM_MAX_RETRIES", 3, "Retries of one model call after 429, 5xx or a dropped connection, inside the engine's one retry layer (timeouts: see IGNITE_LLM_TIMEOUT_SECONDS).", kind="int")
    llm_max_output_tokens: int = _env_field("IGNITE_LLM_MAX_OUTPUT_TOKENS", 4000, "Most output tokens one call asks for; lowered to what the call's schema can hold and what the server's slot leaves after the prompt (llama.cpp /props n_ctx); doubled once on truncation, within the slot.", kind="int")
    llm_prices: str | None = _env_field("IGNITE_LLM_PRICES", None, 'JSON price table, USD per 1M tokens: {"model": {"input": 0.15, "output": 0.6}}; image models: {"model": {"image": 0.04}}.')
    repair_rounds: int = _env_field("IGNITE_REPAIR_ROUNDS", 2, "Bounded repair rounds.", kind="int")
    quality_min_shared_words: int = _env_field("IGNITE_QUALITY_MIN_SHARED_WORDS", 2, "Quality gate off_subject: an item that does not name the subject must share this many content words with the study texts that do.", kind="int")
    quality_option_length_ratio: float = _env_field("IGNITE_QUALITY_OPTION_LENGTH_RATIO", 2.5, "Quality gate answer_length_giveaway: the correct option this many times longer than the longest other option (or shorter than the shortest) gives the answer away.", kind="float")
    quality_option_length_min_chars: int = _env_field("IGNITE_QUALITY_OPTION_LENGTH_MIN_CHARS", 12, "Quality gate answer_length_giveaway: and it differs by at least this many characters (\"7\" vs \"12\" gives nothing away).", kind="int")
    quality_reading_grade_tolerance: float = _env_field("IGNITE_QUALITY_READING_GRADE_TOLERANCE", 3.0, "Warning reading_level_off_band: a study text's Flesch–Kincaid grade more than this above the top of its grade band.", kind="float")
    llm_rpm: int | None = _env_field("IGNITE_LLM_RPM", None, "Requests per minute the text provider allows for OPENAI_BASE_URL + IGNITE_TEXT_MODEL, shared by every run, process and daemon (a budget row in Postgres). Unset: not limited.", kind="int")
    llm_tpm: int | None = _env_field("IGNITE_LLM_TPM", None, "Tokens per minute for the same endpoint + model; a call reserves its output budget + prompt/4 and is corrected to the reported usage. Unset: not limited.", kind="int")
    llm_max_in_flight: int | None = _env_field("IGNITE_LLM_MAX_IN_FLIGHT", None, "Max model calls in flight for the same endpoint + model across every process (IGNITE_LLM_CONCURRENCY still caps each run). Unset: not limited.", kind="int")
    images_per_minute: int | None = _env_field("IGNITE_IMAGES_PER_MINUTE", None, "Image requests per minute for OPENAI_BASE_URL + IGNITE_IMAGE_MODEL, shared like IGNITE_LLM_RPM. Unset: not limited.", kind="int")
    org_max_courses_in_flight: int | None = _env_field("IGNITE_ORG_MAX_COURSES_IN_FLIGHT", None, "Max course jobs of one organization in processing at once; the claim skips an organization at its cap. Unset: no cap.", kind="int")
    org_daily_token_budget: int | None = _env_field("IGNITE_ORG_DAILY_TOKEN_BUDGET", None, "Model tokens one organization may spend per UTC day; past it, jobs fail as budget_exhausted and are retried at 00:00 UTC (no retry spent). Unset: no budget.", kind="int")
    org_daily_cost_budget_usd: float | None = _env_field("IGNITE_ORG_DAILY_COST_BUDGET_USD", None, "USD one organization may spend per UTC day (needs a price for IGNITE_TEXT_MODEL in IGNITE_LLM_PRICES); like the token budget. Unset: no budget.", kind="float")

    agent_token: str | None = _env_field("AGENT_TOKEN", None, "Shared token for agent auth (x-agent-token). Unset: agent auth disabled.", secret=True)
    jwt_secret: str | None = _env_field("JWT_SECRET", None, "HS256 secret for user JWTs (or use JWT_JWKS_URL).", secret=True)
    jwt_jwks_url: str | None = _env_field("JWT_JWKS_URL", None, "JWKS URL for RS256/ES256 user JWTs.")
    jwt_audience: str | None = _env_field("JWT_AUDIENCE", None, "Required `aud` of user JWTs (Supabase: authenticated).")
    enqueue_rate_per_minute: int = _env_field("IGNITE_ENQUEUE_RATE_PER_MINUTE", 120, "Per-caller enqueue rate limit.", kind="int")
    api_host: str = _env_field("IGNITE_API_HOST", "127.0.0.1", "Bind address of `ignite api`.")
    api_port: int = _env_field("IGNITE_API_PORT", 8787, "Port of `ignite api`.", kind="int")
    api_cors_origins: str | None = _env_field("IGNITE_API_CORS_ORIGINS", None, "Comma-separated browser origins allowed to call the API (a frontend on another origin needs this); unset = no CORS.")

    heartbeat_seconds: float = _env_field("IGNITE_HEARTBEAT_SECONDS", 30.0, "Heartbeat interval of a running job.", kind="float")
    stale_timeout_seconds: float = _env_field("IGNITE_STALE_TIMEOUT_SECONDS", 300.0, "A processing job without heartbeat this long becomes stale.", kind="float")
    run_dead_after_seconds: float = _env_field("IGNITE_RUN_DEAD_AFTER_SECONDS", 90.0, "A started queue run with no sign of life this long (no heartbeat of its claims, none finished, not just started) is reported failed and frees its run slot; its claims go back to the queue. Keep it above 2 heartbeats.", kind="float")
    backoff_base_seconds: float = _env_field("IGNITE_BACKOFF_BASE_SECONDS", 30.0, "Base of the exponential retry backoff.", kind="float")
    backoff_cap_seconds: float = _env_field("IGNITE_BACKOFF_CAP_SECONDS", 900.0, "Cap of the retry backoff.", kind="float")
    sensor_interval_seconds: int = _env_field("IGNITE_SENSOR_INTERVAL_SECONDS", 5, "How often the queue sensors look for claimable jobs, in whole 5 s loops of Dagster's sensor daemon (below 5: every loop).", kind="int")
    max_concurrent_runs: int = _env_field("IGNITE_MAX_CONCURRENT_RUNS", 4, "Run queue limit; sensors claim no more than this allows to start soon.", kind="int")
    courses_per_run: int = _env_field("IGNITE_COURSES_PER_RUN", 10, "Max course jobs one run works (amortises run start-up).", kind="int")
    dagster_ui_url: str | None = _env_field("IGNITE_DAGSTER_UI_URL", None, "Base URL of the Dagster UI (e.g. http://localhost:3000); job status then links each job's run. Unset: no link.")
    media_jobs_per_run: int = _env_field("IGNITE_MEDIA_JOBS_PER_RUN", 25, "Max media jobs one run works (a course's images usually fit one run).", kind="int")

    def local_storage_root(self) -> Path:
        return self.storage_root or (self.home / "storage")

    def prices(self) -> dict[str, dict[str, Decimal]]:
        """The price table, parsed; an unparsable table is a configuration error, not zero cost."""
        if not self.llm_prices:
            return {}
        try:
            raw = json.loads(self.llm_prices)
            return {m: {k: Decimal(str(v)) for k, v in p.items()} for m, p in raw.items()}
        except (ValueError, AttributeError, TypeError) as exc:
            raise ConfigError("pricing", [], [f"IGNITE_LLM_PRICES is not a JSON price table: {exc}"]) from exc

    def require(self, purpose: str, *names: str) -> None:
        """Raise one ConfigError naming every unset variable among ``names`` (env var names)."""
        by_env = {f.metadata["env"]: f.name for f in fields(self)}
        missing = [n for n in names if getattr(self, by_env[n]) in (None, "")]
        if missing:
            raise ConfigError(purpose, missing)

    def require_production(self) -> None:
        """Production never uses embedded services: storage and database must be explicit."""
        names = ["DATABASE_URL"]
        if self.storage_backend == "s3":
            names += ["S3_REGION", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "PUBLIC_MEDIA_BASE_URL"]
        else:
            names += ["IGNITE_STORAGE_ROOT", "PUBLIC_MEDIA_BASE_URL"]
        self.require("production", *names)

    @property
    def model_configured(self) -> bool:
        return bool(self.openai_api_key and self.text_model)

    # The image provider has settings of its own; each falls back to the text provider's only when unset,
    # so one OpenAI account serves both with no extra setting, and a local text model (llama.cpp, vLLM,
    # Ollama: no /v1/images/generations) can sit beside a hosted image model, or the reverse.
    @property
    def image_provider_key(self) -> str | None:
        return self.image_api_key or self.openai_api_key

    @property
    def image_provider_base_url(self) -> str | None:
        return self.image_base_url or self.openai_base_url

    @property
    def images_configured(self) -> bool:
        return bool(self.image_provider_key and self.image_model)

    def require_images(self) -> None:
        """One ConfigError naming what the image provider lacks (the key under both of its names)."""
        missing = [] if self.image_provider_key else ["IGNITE_IMAGE_API_KEY (or OPENAI_API_KEY)"]
        missing += [] if self.image_model else ["IGNITE_IMAGE_MODEL"]
        if missing:
            raise ConfigError("images", missing)


def _parse(kind: str, env: str, raw: str, errors: list[str]) -> Any:
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "path":
            return Path(raw).expanduser()
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError:
        errors.append(f"{env}={raw!r} is not a valid {kind}")
        return None
    return raw


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``environ`` (default ``os.environ``); malformed values are reported together."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    errors: list[str] = []
    for f in fields(Settings):
        env = f.metadata["env"]
        raw = environ.get(env)
        if raw is None or raw == "":
            continue
        values[f.name] = _parse(f.metadata["kind"], env, raw, errors)
    if values.get("env", "dev") not in ("dev", "test", "production"):
        errors.append(f"IGNITE_ENV={values['env']!r} must be dev, test or production")
    if values.get("storage_backend", "local") not in ("local", "s3"):
        errors.append(f"STORAGE_BACKEND={values['storage_backend']!r} must be local or s3")
    beat, dead = values.get("heartbeat_seconds", 30.0), values.get("run_dead_after_seconds", 90.0)
    if isinstance(beat, float) and isinstance(dead, float) and dead <= 2 * beat:
        errors.append(f"IGNITE_RUN_DEAD_AFTER_SECONDS={dead} must be above 2 × IGNITE_HEARTBEAT_SECONDS ({beat}): "
                      "a live run would be taken for dead between two heartbeats")
    for name in ("llm_rpm", "llm_tpm", "llm_max_in_flight", "images_per_minute", "org_max_courses_in_flight",
                 "org_daily_token_budget", "org_daily_cost_budget_usd"):
        if values.get(name) is not None and values[name] <= 0:
            env = next(f.metadata["env"] for f in fields(Settings) if f.name == name)
            errors.append(f"{env}={values[name]!r} must be positive (unset it for no limit)")
    if values.get("quality_min_shared_words") is not None and values["quality_min_shared_words"] < 1:
        errors.append("IGNITE_QUALITY_MIN_SHARED_WORDS must be at least 1")
    if values.get("quality_option_length_ratio") is not None and values["quality_option_length_ratio"] <= 1:
        errors.append("IGNITE_QUALITY_OPTION_LENGTH_RATIO must be above 1")
    if errors:
        raise ConfigError("settings", [], errors)
    settings = Settings(**values)
    if settings.org_daily_cost_budget_usd is not None and settings.text_model:
        # a cost budget over a model without a price could never be reached: refuse it at start
        entry = settings.prices().get(settings.text_model, {})
        if "input" not in entry or "output" not in entry:
            raise ConfigError("org budget", [], [
                f"IGNITE_ORG_DAILY_COST_BUDGET_USD is set but IGNITE_LLM_PRICES has no input/output price for "
                f"IGNITE_TEXT_MODEL={settings.text_model!r}"])
    if settings.env == "production":
        settings.require_production()
    return settings


def settings_table() -> list[dict[str, str]]:
    """Rows for docs/configuration.md (``settings_markdown``) and `ignite config`."""
    rows = []
    for f in fields(Settings):
        default = f.default
        if isinstance(default, Path):
            default = str(default).replace(str(REPO_ROOT), ".")
        rows.append({"env": f.metadata["env"], "default": "" if default is None else str(default), "doc": f.metadata["doc"]})
    return rows


# --- docs/configuration.md, generated from the declarations ----------------------------------------------

CONFIG_DOC_PATH: Path = REPO_ROOT / "docs" / "configuration.md"

# Settings that one purpose needs outside production's own check; each is enforced where it is used
# (the model client's ``require("model", ...)``, ``Settings.require_images``, the API's auth set-up).
PURPOSE_REQUIREMENTS: dict[str, str] = {
    "OPENAI_API_KEY": "for the model path",
    "IGNITE_TEXT_MODEL": "for the model path",
    "IGNITE_IMAGE_MODEL": "for images",
    "IGNITE_IMAGE_API_KEY": "for images on their own server",
    "AGENT_TOKEN": "for the API (one auth mode)",
    "JWT_SECRET": "for the API (one auth mode)",
    "JWT_JWKS_URL": "for the API (one auth mode)",
    "JWT_AUDIENCE": "for the API (one auth mode)",
}

_INTRO = """\
# Configuration

<!-- Generated by `python -m ignite_dagster.config --write` from ignite_dagster/config.py; do not edit.
     tests/unit/test_docs.py fails when this page and the settings disagree. -->

Every setting is an environment variable, read in one place (`ignite_dagster/config.py`; `ignite config`
prints this list). Missing required settings are reported together, by name, in one error; nothing falls
back to an invented secret, token or organization id. Malformed values are reported together too.
`IGNITE_ENV=production` refuses to start without an explicit database and storage (the "required in
production" column).

Text and images are separate providers: `IGNITE_IMAGE_BASE_URL` / `IGNITE_IMAGE_API_KEY` fall back to
`OPENAI_BASE_URL` / `OPENAI_API_KEY` only when unset, so one OpenAI account needs no extra setting, and a
local text model (llama.cpp, vLLM and Ollama serve no `/v1/images/generations`) can run beside a hosted
image model, or the reverse.

"""

_OUTRO = """
## dagster.yaml

`dagster.yaml` (copied into `DAGSTER_HOME` by `ignite dev`/`demo`/tests) sets Postgres storage from
`DATABASE_URL`, the QueuedRunCoordinator, the instance run limit (6, maintenance runs at most 2) and the
`model_provider` concurrency pool (4 concurrent image-generating ops across all runs; course fills and
repairs run in each course's background thread, bounded per run by `IGNITE_LLM_CONCURRENCY` and the
server's slots and across processes by the shared provider budget). The pool's limit is written into the
instance before the first run (see [deploy/README.md](../deploy/README.md), "The concurrency pools").
`DATABASE_URL` must be a URL (`postgresql://user:pass@host:5432/db`), not a key=value string: Dagster's
storage parses it with SQLAlchemy.
"""


def _production_requirements() -> dict[str, str]:
    """Which settings production requires, per storage backend, as ``require_production`` checks them."""
    needed: dict[str, set[str]] = {}
    for backend in ("local", "s3"):
        try:
            Settings(storage_backend=backend).require_production()
            needed[backend] = set()
        except ConfigError as exc:
            needed[backend] = set(exc.missing)
    always = needed["local"] & needed["s3"]
    notes = {name: "yes" for name in always}
    for backend, names in needed.items():
        notes.update({name: f"with {backend}" for name in names - always})
    return notes


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def settings_markdown() -> str:
    """docs/configuration.md, rendered from the declarations above: a hand-kept table drifted from them.

    What production requires comes from ``Settings.require_production`` itself, not written down twice.
    """
    declared = {f.metadata["env"]: f for f in fields(Settings)}
    unknown = sorted(set(PURPOSE_REQUIREMENTS) - set(declared))
    if unknown:
        raise ValueError(f"PURPOSE_REQUIREMENTS names settings that are not declared: {', '.join(unknown)}")
    required = {**PURPOSE_REQUIREMENTS, **_production_requirements()}
    lines = ["| variable | default | required in production | what |", "|---|---|---|---|"]
    for row in settings_table():
        default = row["default"]
        if declared[row["env"]].metadata["kind"] == "bool":
            default = default.lower()
        lines.append(f"| `{row['env']}` | {_cell(default) or '—'} | {required.get(row['env'], '')} | "
                     f"{_cell(row['doc'])} |")
    return _INTRO + "\n".join(lines) + "\n" + _OUTRO


def config_doc_main(argv: list[str] | None = None) -> int:
    """``python -m ignite_dagster.config [--write | --check]``: print, rewrite or check the page."""
    parser = argparse.ArgumentParser(prog="python -m ignite_dagster.config",
                                     description="Print, rewrite or check docs/configuration.md.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite docs/configuration.md")
    mode.add_argument("--check", action="store_true", help="exit 1 when the committed page is stale")
    args = parser.parse_args(argv)
    page = settings_markdown()
    if args.write:
        CONFIG_DOC_PATH.write_text(page)
    elif args.check:
        if not CONFIG_DOC_PATH.exists() or CONFIG_DOC_PATH.read_text() != page:
            print(f"{CONFIG_DOC_PATH} is stale: run python -m ignite_dagster.config --write", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(config_doc_main())
