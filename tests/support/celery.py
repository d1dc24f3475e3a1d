"""Celery on loopback for the `celery` test: the machine's RabbitMQ and Redis, isolated per test run, and
worker processes started with the command line of deploy/celery/ignite-celery-worker.service.

Isolation: a queue of its own per test run (DAGSTER_CELERY_QUEUE: the launcher publishes to it, the
workers consume only it) and a Redis key prefix of its own (Celery's result_backend_transport_options
global_keyprefix, set on both the launcher and the workers); both are deleted at the end."""

from __future__ import annotations

import os
import shlex
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ignite_dagster.config import REPO_ROOT

AMQP_URL = os.environ.get("IGNITE_TEST_AMQP_URL", "pyamqp://guest:guest@127.0.0.1:5672//")
REDIS_URL = os.environ.get("IGNITE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_DEPLOY = REPO_ROOT / "deploy" / "celery"
INSTALL_ROOT = "/opt/ignite"


def _missing() -> list[str]:
    """What the test cannot run without, by name (empty when everything is there)."""
    missing = []
    try:
        import dagster_celery  # noqa: F401
        import redis
    except ImportError as exc:
        return [f"the celery extra ({exc.name}; `python3 dev.py setup` installs it)"]
    try:
        from kombu import Connection

        with Connection(AMQP_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - any reason the broker does not answer
        missing.append(f"RabbitMQ at {AMQP_URL} ({type(exc).__name__}: {exc})")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        missing.append(f"Redis at {REDIS_URL} ({type(exc).__name__}: {exc})")
    return missing


def require_brokers() -> None:
    """Skip naming what is missing; under IGNITE_REQUIRE_CELERY=1 (CI) fail instead."""
    missing = _missing()
    if not missing:
        return
    message = "the celery test needs " + "; ".join(missing)
    if os.environ.get("IGNITE_REQUIRE_CELERY") == "1":
        pytest.fail(message + " (IGNITE_REQUIRE_CELERY=1)")
    pytest.skip(message)


@dataclass
class CeleryIsolation:
    """The names one test run uses on the shared broker and backend."""

    queue: str
    key_prefix: str

    @classmethod
    def new(cls) -> CeleryIsolation:
        tag = uuid.uuid4().hex[:10]
        return cls(queue=f"ignite-test-{tag}", key_prefix=f"ignite-test-{tag}-")

    @property
    def env(self) -> dict[str, str]:
        return {"DAGSTER_CELERY_BROKER_URL": AMQP_URL, "DAGSTER_CELERY_BACKEND_URL": REDIS_URL,
                "DAGSTER_CELERY_QUEUE": self.queue}

    @property
    def config_source(self) -> dict:
        return {"result_backend_transport_options": {"global_keyprefix": self.key_prefix}}

    def launcher_block(self) -> str:
        """deploy/celery/run_launcher.yaml with this run's Redis key prefix added."""
        block = yaml.safe_load((CELERY_DEPLOY / "run_launcher.yaml").read_text())
        block["run_launcher"]["config"]["config_source"] = self.config_source
        return yaml.safe_dump(block)

    def worker_yaml(self, folder: Path) -> Path:
        """deploy/celery/worker.yaml with the same key prefix, written into ``folder``."""
        config = yaml.safe_load((CELERY_DEPLOY / "worker.yaml").read_text())
        config["execution"]["config"]["config_source"] = self.config_source
        path = folder / "celery-worker.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def cleanup(self) -> None:
        import redis
        from kombu import Connection

        with Connection(AMQP_URL, connect_timeout=3) as conn:
            channel = conn.channel()
            channel.queue_delete(self.queue)
            channel.exchange_delete(self.queue)
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{self.key_prefix}*"))
        if keys:
            client.delete(*keys)


def worker_unit_argv() -> list[str]:
    """ExecStart of deploy/celery/ignite-celery-worker.service, split like systemd does."""
    import configparser

    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str
    unit.read(CELERY_DEPLOY / "ignite-celery-worker.service")
    return shlex.split(unit["Service"]["ExecStart"])


def worker_argv(name: str, config_yaml: Path, env: dict[str, str], slots: int) -> list[str]:
    """The unit's command for this checkout: ${VAR} from ``env`` (systemd's expansion), the test's worker
    yaml, its own node name and ``slots`` pool processes."""
    argv = []
    for arg in worker_unit_argv():
        arg = arg.replace(INSTALL_ROOT, str(REPO_ROOT))
        for key, value in env.items():
            arg = arg.replace(f"${{{key}}}", value)
        argv.append(arg)
    argv[argv.index("-y") + 1] = str(config_yaml)
    argv[argv.index("-n") + 1] = name
    concurrency = [i for i, a in enumerate(argv) if a.startswith("--concurrency=")]
    assert concurrency, argv
    argv[concurrency[0]] = f"--concurrency={slots}"
    return argv


def worker_names_ready(names: list[str]) -> set[str]:
    """Workers (node names ``<name>@<host>``) that answer a control ping on the broker."""
    from celery import Celery

    app = Celery(broker=AMQP_URL)
    try:
        replies = app.control.ping(destination=[f"{n}@{socket.gethostname()}" for n in names], timeout=1.0)
    finally:
        app.close()
    return {node.split("@", 1)[0] for reply in replies for node in reply}
