"""`ignite demo`: the main job end to end, on the real stack, in well under a minute once installed.

What it does, in order:

1. Database: ``DATABASE_URL`` when set, else the embedded Postgres under ``IGNITE_HOME`` (started and left
   running, so the UI command printed at the end works afterwards); migrations; the Dagster instance
   folder (``IGNITE_HOME/dagster``); local storage under ``IGNITE_HOME/storage``.
2. The demo organization: the ``organizations`` row with slug ``demo``, created when missing, reused
   otherwise. Nothing else is invented: every course belongs to it.
3. Enqueues a small set of courses through ``submit_course_request`` (the path the HTTP API and
   ``ignite enqueue`` use): several shipped packs, both modes, all offline; plus one model-filled course
   when a model is configured (``OPENAI_API_KEY`` + ``IGNITE_TEXT_MODEL``).
4. Starts the Dagster daemon (``Stack.start_daemon``): the course sensor claims the jobs and launches
   ``generate_courses`` runs, whose ops write course.json, the metadata rows and the asset
   materializations — exactly the production path, no shortcut.
5. Polls the job rows (status, progress_stage, progress_percent) every 0.3 s for live progress bars, then
   checks every course.json with the product's course schema check (``course.validation.schema_issues``)
   and prints a summary table and the command that opens the Dagster UI on the same instance.

Course ids are fixed (``demo-<topic>-<band>``, e.g. ``demo-addition-3-5``): every demo regenerates the
same six courses, so the UI keeps one partition per demo course whose history shows one materialization per demo run, and
course.json / course_metadata are updated in place (the catalog gains a row per job), never duplicated.
Each run has a tag (default: its start time, ``MMDD-HHMMSS``) and enqueues with the idempotency keys
``demo:<tag>:<course id>``: ``ignite demo --tag <tag>`` re-attaches to that run's jobs instead of
enqueueing new ones, and a course whose job from an earlier (interrupted) demo is still queued is
re-attached to that job rather than enqueued twice.

Exit status: 0 only when every course is ``done`` and its course.json validates; 1 otherwise (failed jobs
are listed with their reason codes and errors); 130 on Ctrl-C. The daemon (and the UI with
``--keep-running``) is stopped on every exit path.

The package, one module per job: ``scenario`` (which courses, the requests, the tags and keys),
``stack`` (the demo's share of the local stack's lifecycle), ``watching`` (polling the jobs until they are
terminal), ``checking`` (the verdict on each course, the product's own schema check), ``rendering``
(every printed line) and ``run`` (the steps in order). This module is imported when the CLI builds its
parser, so it imports only ``scenario`` (light): no dagster, no psycopg, no rich until ``run_demo`` runs.
"""

from __future__ import annotations

import argparse

from ignite_dagster.cli.demo.scenario import parse_tag


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-running", action="store_true",
                        help="also start the Dagster UI, print its URL and keep the daemon and the UI running "
                        "until Ctrl-C")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for every course to finish once the daemon starts (default 300)")
    parser.add_argument("--port", type=int, default=3000, help="port of the Dagster UI (default 3000)")
    parser.add_argument("--host", default="127.0.0.1", help="address the UI binds with --keep-running")
    parser.add_argument("--tag", type=parse_tag,
                        help="names this run in the idempotency keys (default: the start time, MMDD-HHMMSS). "
                        "Pass an earlier run's tag to re-attach to its jobs instead of enqueueing new ones.")


def run_demo(settings, args) -> int:
    """The entry of `ignite demo`: refused in production, else the whole demo (``run.Demo``)."""
    from ignite_dagster.cli.errors import CliError

    if settings.env == "production":
        raise CliError("`ignite demo` writes demo courses and is for dev and test only, not IGNITE_ENV=production")
    from ignite_dagster.cli.demo.run import Demo

    return Demo(settings, args).run()
