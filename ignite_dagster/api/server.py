"""``ignite api``: resolve the database, refuse a stale schema, open pool and store, serve with uvicorn.

Start-up fails loudly, before binding the port, on an unsafe auth configuration, an unreachable
database or a schema that is behind the code (``ignite db migrate`` fixes that).
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from ignite_dagster import db
from ignite_dagster.api.app import create_app
from ignite_dagster.auth import check_auth_settings
from ignite_dagster.config import ConfigError, Settings, load_settings
from ignite_dagster.local.embedded import resolve_database_url
from ignite_dagster.storage import open_store


def serve(settings: Settings | None = None, *, host: str | None = None, port: int | None = None) -> None:
    """Run the HTTP API until interrupted. Raises ConfigError / db.SchemaError before serving."""
    settings = settings or load_settings()
    check_auth_settings(settings)
    # The audit lines (who enqueued, requeued, published what) and error details go to stderr next
    # to uvicorn's own log; uvicorn configures only its own loggers.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    app_log = logging.getLogger("ignite_dagster")
    if not app_log.handlers:
        app_log.addHandler(handler)
        app_log.setLevel(logging.INFO)
    url = resolve_database_url(settings)
    db.check(url)
    store = open_store(settings)
    pool = db.make_pool(url, max_size=settings.db_pool_max, name="ignite-api")
    try:
        origins = [o.strip() for o in (settings.api_cors_origins or "").split(",") if o.strip()]
        app = create_app(settings, pool, store, cors_origins=origins or None)
        uvicorn.run(
            app,
            host=host or settings.api_host,
            port=port if port is not None else settings.api_port,
            log_level="info",
            server_header=False,
        )
    finally:
        pool.close()


def main() -> int:
    """``python -m ignite_dagster.api.server``: the same as ``ignite api``, with a readable failure."""
    try:
        serve()
    except (ConfigError, db.SchemaError) as exc:
        print(f"ignite api: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
