"""The organizations repository (``ignite_dagster/db/organizations.py``), through the CLI that uses it
and directly as the demo uses it."""

from __future__ import annotations

import psycopg

from ignite_dagster.db.organizations import ensure_organization, list_organizations, save_organization
from tests.integration.test_cli import ignite


def test_orgs_create_twice_renames_and_list_prints_id_slug_and_name(db_url, tmp_path):
    first = ignite("orgs", "create", "Acme", "--slug", "acme", db_url=db_url, tmp_path=tmp_path).stdout.strip()
    again = ignite("orgs", "create", "Acme Schools", "--slug", "acme", db_url=db_url, tmp_path=tmp_path)
    assert again.stdout.strip() == first
    listed = ignite("orgs", "list", db_url=db_url, tmp_path=tmp_path).stdout.splitlines()
    assert listed == [f"{first}  {'acme':20}  Acme Schools"]


def test_ensure_reuses_an_organization_as_it_is_and_creates_a_missing_one(db_url):
    org = save_organization(db_url, "Renamed by an operator", "demo")
    assert ensure_organization(db_url, "Demo", "demo") == org
    other = ensure_organization(db_url, "Other", "other")
    assert other != org
    assert [(o.id, o.name, o.slug) for o in list_organizations(db_url)] == [
        (org, "Renamed by an operator", "demo"), (other, "Other", "other")]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM organizations").fetchone()[0] == 2
