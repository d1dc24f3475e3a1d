"""The docs stay true to the code and inside the repository (no database, no network)."""

from __future__ import annotations

import re
from pathlib import Path

from ignite_dagster.config import CONFIG_DOC_PATH, config_doc_main, settings_markdown, settings_table

REPO_ROOT = Path(__file__).resolve().parents[1]
while not (REPO_ROOT / "pyproject.toml").exists():  # the test may sit one folder deeper (tests/<layer>/)
    REPO_ROOT = REPO_ROOT.parent

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")),
         REPO_ROOT / "deploy" / "README.md", REPO_ROOT / "bench" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_configuration_page_is_generated_from_the_settings():
    stale = "docs/configuration.md is stale: python -m ignite_dagster.config --write"
    assert CONFIG_DOC_PATH.read_text() == settings_markdown(), stale
    text = CONFIG_DOC_PATH.read_text()
    for row in settings_table():
        assert f"| `{row['env']}` |" in text, row["env"]


def test_check_mode_fails_on_a_stale_page(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text(settings_markdown().replace("IGNITE_REPAIR_ROUNDS", "IGNITE_REPAIR_TIMES"))
    monkeypatch.setattr("ignite_dagster.config.CONFIG_DOC_PATH", stale)
    assert config_doc_main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    monkeypatch.setattr("ignite_dagster.config.CONFIG_DOC_PATH", CONFIG_DOC_PATH)
    assert config_doc_main(["--check"]) == 0


def test_production_column_follows_require_production():
    rows = {line.split("|")[1].strip(): line.split("|")[3].strip()
            for line in settings_markdown().splitlines() if line.startswith("| `")}
    assert rows["`DATABASE_URL`"] == "yes" and rows["`PUBLIC_MEDIA_BASE_URL`"] == "yes"
    assert rows["`IGNITE_STORAGE_ROOT`"] == "with local"
    assert rows["`S3_SECRET_ACCESS_KEY`"] == "with s3"


def test_every_link_resolves_inside_the_repository():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            path = target.split("#", 1)[0]
            if "://" in target or target.startswith(("mailto:", "/")):
                broken.append(f"{page.relative_to(REPO_ROOT)}: {target} leaves the repository")
                continue
            if not path:  # an anchor on the same page
                continue
            resolved = (page.parent / path).resolve()
            if not resolved.is_relative_to(REPO_ROOT) or not resolved.exists():
                broken.append(f"{page.relative_to(REPO_ROOT)}: {target}")
    assert not broken, broken


def test_readme_stays_short_and_keeps_the_commands_ci_runs():
    text = (REPO_ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 150
    assert "python3 dev.py demo" in text and "python3 dev.py test" in text
    assert "../shared" not in text
