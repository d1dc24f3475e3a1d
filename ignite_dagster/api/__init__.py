"""The HTTP service: routes mirroring the original edge functions, hybrid auth, organization boundary.

``create_app`` builds the ASGI app from an open pool and store (tests, embedding); ``serve`` is what
``ignite api`` runs.
"""

from ignite_dagster.api.app import create_app

__all__ = ["create_app", "serve"]


def serve(*args, **kwargs):  # noqa: ANN002, ANN003 - thin lazy re-export (uvicorn is imported on use)
    from ignite_dagster.api.server import serve as _serve

    return _serve(*args, **kwargs)
