"""The HTTP service: routes mirroring the original edge functions, hybrid auth, organization boundary.

``create_app`` builds the ASGI app from an open pool and store (tests, embedding); ``serve`` is what
``ignite api`` runs.
"""

from ignite_dagster.api.app import create_app
from ignite_dagster.api.server import serve

__all__ = ["create_app", "serve"]
