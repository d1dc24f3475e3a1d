"""What deploy/ ships for each run launcher is accepted by Dagster as an operator would copy it: the block
appended to the repository's dagster.yaml passes the instance schema, and the launcher's own config
validates against its class's config schema at the pinned version (dagster-celery, dagster-k8s,
dagster-docker 0.29.27). The Celery layout also runs end to end (tests/e2e/test_e2e_celery.py, marker
`celery`); Kubernetes and Docker are validated here only."""

from __future__ import annotations

import importlib

import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config

from ignite_dagster.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
BLOCKS = {
    "celery": ("dagster_celery.launcher", "CeleryRunLauncher", "dagster-celery"),
    "k8s": ("dagster_k8s", "K8sRunLauncher", "dagster-k8s"),
    "docker": ("dagster_docker", "DockerRunLauncher", "dagster-docker"),
}
ENV = {"DATABASE_URL": "postgresql://ignite@db.internal:5432/ignite", "IGNITE_RUN_IMAGE": "registry.internal/ignite:1",
       "DAGSTER_CELERY_BROKER_URL": "pyamqp://ignite@mq.internal//", "DAGSTER_CELERY_BACKEND_URL": "redis://cache.internal/0",
       "DAGSTER_CELERY_QUEUE": "ignite-runs"}


@pytest.mark.parametrize("layout", sorted(BLOCKS))
def test_the_run_launcher_block_is_accepted_by_the_pinned_launcher(layout, tmp_path, monkeypatch):
    module, cls_name, dist = BLOCKS[layout]
    path = DEPLOY / layout / "run_launcher.yaml"
    block = yaml.safe_load(path.read_text())["run_launcher"]
    assert (block["module"], block["class"]) == (module, cls_name)
    launcher = getattr(importlib.import_module(module), cls_name)
    assert importlib.metadata.version(dist) == "0.29.27"  # the library that pairs with dagster 1.13.27

    result = validate_config(launcher.config_type(), block["config"])
    assert result.success, [e.message for e in result.errors]

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "dagster.yaml").write_text("\n".join([(REPO_ROOT / "dagster.yaml").read_text(), path.read_text()]))
    config, _ = dagster_instance_config(str(tmp_path))  # raises on anything the instance schema refuses
    assert config["run_launcher"]["class"] == cls_name


def test_the_readme_points_operators_at_the_validated_files():
    text = (DEPLOY / "README.md").read_text()
    for layout in BLOCKS:
        assert f"{layout}/run_launcher.yaml" in text, layout
    assert "K8sRunLauncher\n    config:" not in text  # no second, unvalidated copy of a block in the docs
