"""The code location (workspace.yaml, deploy/, ``dg check defs``): every definition in ``defs/``, loaded
from that folder, plus the resources and executor bound here, once, for every job, sensor and check.

``defs`` is a ``@definitions`` function, evaluated when the code location loads (and by tests through
``defs()``), never at import: importing this module or any module of ``defs/`` reads no environment.
Objects whose shape depends on a setting (the sensors' tick interval, the backfill batch size) come from
``@definitions`` functions in their own modules (``defs/courses/sensors.py``, ``defs/courses/assets.py``,
``defs/media/sensors.py``); every other module contributes its module-level assets, checks, jobs and
schedules.

The folder is loaded as ``dg.load_from_defs_folder`` would (``[tool.dg]`` in pyproject.toml names
``ignite_dagster.defs``), but from the imported package instead of pyproject.toml, which an installed
wheel does not carry.

Bound here: the resources of defs/resources.py (``queue``, ``storage``, ``model``) and the in-memory IO
manager with the in-process executor, which is why every run executes in one process: the course and
media runs hand their work objects from op to op in memory (batching several courses into one run is
what makes runs cheap).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from dagster import (
    ComponentTree,
    Definitions,
    PreviewWarning,
    definitions,
    in_process_executor,
    mem_io_manager,
)

import ignite_dagster
import ignite_dagster.defs
from ignite_dagster.defs.resources import ModelResource, QueueResource, StorageResource

PROJECT_ROOT = Path(ignite_dagster.__file__).resolve().parent.parent


def load_defs_folder() -> Definitions:
    """Every definition of ``ignite_dagster.defs``, without resources."""
    with warnings.catch_warnings():
        # module-level objects are collected with load_definitions_from_module (preview in 1.13)
        warnings.simplefilter("ignore", PreviewWarning)
        return ComponentTree.from_module(defs_module=ignite_dagster.defs, project_root=PROJECT_ROOT).build_defs()


def code_location_resources() -> dict[str, object]:
    """The resources every run, sensor and check of the code location uses (settings: the environment)."""
    return {"queue": QueueResource(), "storage": StorageResource(), "model": ModelResource(),
            "io_manager": mem_io_manager}


@definitions
def defs() -> Definitions:
    return Definitions.merge(load_defs_folder(),
                             Definitions(resources=code_location_resources(), executor=in_process_executor))
