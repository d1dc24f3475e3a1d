"""The ``organizations`` table, read and written in one place: every course and job belongs to a row of it.

The operator's CLI (``ignite orgs create`` / ``ignite orgs list``) and ``ignite demo`` (its ``demo``
organization) used to carry their own statements; they now share these. Request-time reads of the table
(does the organization a caller names exist?) stay in ``auth.py``, next to the checks they serve.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from ignite_dagster.db.pool import connect


@dataclass(frozen=True)
class Organization:
    id: UUID
    name: str
    slug: str | None


def save_organization(url: str, name: str, slug: str) -> UUID:
    """The organization with ``slug``, created or renamed to ``name``; returns its id.

    An operator creating an organization that already exists means "this is its name now"."""
    with connect(url, autocommit=True) as conn:
        return conn.execute(
            "INSERT INTO organizations (name, slug) VALUES (%s, %s) "
            "ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name RETURNING id",
            (name, slug),
        ).fetchone()["id"]


def ensure_organization(url: str, name: str, slug: str) -> UUID:
    """The organization with ``slug``: reused as it is when present (its name kept), created otherwise.

    For tools that need *an* organization to work in (the demo) and must not rename one an operator
    already set up."""
    with connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO organizations (name, slug) VALUES (%s, %s) ON CONFLICT (slug) DO NOTHING",
                     (name, slug))
        return conn.execute("SELECT id FROM organizations WHERE slug = %s", (slug,)).fetchone()["id"]


def list_organizations(url: str) -> list[Organization]:
    """Every organization, oldest first."""
    with connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT id, name, slug FROM organizations ORDER BY created_at").fetchall()
    return [Organization(**row) for row in rows]
