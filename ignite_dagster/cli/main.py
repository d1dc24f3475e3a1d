"""`ignite`: the command line of the course factory.

argparse keeps start-up light (every heavy import happens inside the command that needs it), which
matters because the same package is re-imported by every Dagster run process.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from uuid import UUID

from ignite_dagster.cli.errors import CliError
from ignite_dagster.config import ConfigError, Settings, load_settings


def _database_url(settings: Settings) -> str:
    from ignite_dagster.local.embedded import resolve_database_url

    return resolve_database_url(settings)


def _queue(settings: Settings, check: bool = True):
    from ignite_dagster import db
    from ignite_dagster.queue import JobQueue

    url = _database_url(settings)
    if check:
        db.check(url)
    return JobQueue(url, org_max_in_flight=settings.org_max_courses_in_flight)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _table_arg(kind: str) -> str:
    return {"course": "ai_course_jobs", "media": "ai_media_jobs"}[kind]


# -- db ---------------------------------------------------------------------------------------------
def cmd_db_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from ignite_dagster import db

    applied = db.migrate(_database_url(settings))
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return 0


def cmd_db_check(settings: Settings, args: argparse.Namespace) -> int:
    from ignite_dagster import db

    db.check(_database_url(settings))
    print("schema is up to date")
    return 0


# -- orgs -------------------------------------------------------------------------------------------
def cmd_orgs_create(settings: Settings, args: argparse.Namespace) -> int:
    from ignite_dagster.db.organizations import save_organization

    print(save_organization(_database_url(settings), args.name, args.slug))
    return 0


def cmd_orgs_list(settings: Settings, args: argparse.Namespace) -> int:
    from ignite_dagster.db.organizations import list_organizations

    for org in list_organizations(_database_url(settings)):
        print(f"{org.id}  {org.slug or '-':20}  {org.name}")
    return 0


# -- enqueue / jobs ---------------------------------------------------------------------------------
def cmd_enqueue(settings: Settings, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ignite_dagster.course.request import CourseRequest, describe_validation_error
    from ignite_dagster.course_jobs.submit import IdempotencyConflict, RequestRefused, submit_course_request
    from ignite_dagster.storage import open_store

    # Only the flags given: a field left out keeps the model's default *and* counts as not requested.
    fields = {name: getattr(args, name) for name in CourseRequest.model_fields if getattr(args, name) is not None}
    try:
        request = CourseRequest(**fields)
    except ValidationError as exc:
        raise CliError(f"invalid request: {describe_validation_error(exc)}") from exc
    queue = _queue(settings)
    try:
        result = submit_course_request(
            queue,
            open_store(settings),
            request,
            organization_id=args.org,
            idempotency_key=args.idempotency_key,
            requested_by=args.requested_by,
            priority=args.priority,
            max_retries=args.max_retries,
            model_configured=settings.model_configured,
            images_configured=settings.images_configured,
        )
    except IdempotencyConflict as exc:
        raise CliError(f"not enqueued: {exc} (existing job {exc.job.id})") from exc
    except RequestRefused as exc:
        raise CliError(f"not enqueued: {exc.code}: {exc}") from exc
    if args.json:
        _print_json({"jobId": str(result.job.id), "status": result.job.status, "replayed": result.replayed})
    else:
        print(result.job.id)
        if result.replayed:
            print(f"(replayed: existing job, status {result.job.status})", file=sys.stderr)
    return 0


# Older spellings of some request flags, still accepted.
_REQUEST_FLAG_ALIASES = {"levels_count": ["--levels"], "study_texts_count": ["--study-texts"], "wants_images": ["--images"]}


def _add_request_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per CourseRequest field (``items_per_group`` → ``--items-per-group``), typed from the model,
    with the field's description and default as help. Every flag defaults to None (= not given)."""
    import types
    import typing

    from ignite_dagster.course.request import CourseRequest

    for name, field in CourseRequest.model_fields.items():
        flags = [f"--{name.replace('_', '-')}", *_REQUEST_FLAG_ALIASES.get(name, [])]
        members = [field.annotation]
        while any(typing.get_origin(m) in (typing.Union, types.UnionType, typing.Annotated) for m in members):
            members = [a for m in members for a in (
                typing.get_args(m)[:1] if typing.get_origin(m) is typing.Annotated
                else typing.get_args(m) if typing.get_origin(m) in (typing.Union, types.UnionType) else (m,))]
        members = [m for m in members if m is not type(None)]
        help_text = field.description or ""
        if not field.is_required() and field.default not in (None, False):
            help_text += f" (default {field.default})"
        kwargs: dict = {"dest": name, "default": None, "help": help_text, "required": field.is_required()}
        if members == [bool]:
            parser.add_argument(*flags, action="store_const", const=True, **kwargs)
        elif len(members) == 1 and typing.get_origin(members[0]) is list:
            # repeatable: --tags a --tags b (the model checks each value)
            kwargs["help"] = (field.description or "") + " (repeat the flag for several)"
            parser.add_argument(*flags, action="append", **kwargs)
        elif len(members) == 1 and typing.get_origin(members[0]) is typing.Literal:
            # the model checks the value, so a wrong one reads like every other invalid request
            parser.add_argument(*flags, metavar="{" + ",".join(typing.get_args(members[0])) + "}", **kwargs)
        elif members == [int]:
            parser.add_argument(*flags, type=int, **kwargs)
        else:  # text (a grade may also be a number: the model reads "4" as well as 4)
            parser.add_argument(*flags, **kwargs)


def cmd_jobs_list(settings: Settings, args: argparse.Namespace) -> int:
    queue = _queue(settings)
    jobs = queue.list(_table_arg(args.kind), organization_id=args.org, status=args.status,
                      course_id=args.course_id, limit=args.limit)
    if args.json:
        _print_json([j.model_dump(mode="json") for j in jobs])
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "course", "status", "attempt", "retries", "stage", "%", "reason", "updated")
    for j in jobs:
        table.add_row(str(j.id), j.course_id, j.status, str(j.attempt), f"{j.retry_count}/{j.max_retries}",
                      j.progress_stage or "", str(j.progress_percent or 0), j.reason_code or "",
                      j.updated_at.strftime("%H:%M:%S"))
    Console().print(table)
    return 0


def cmd_jobs_show(settings: Settings, args: argparse.Namespace) -> int:
    queue = _queue(settings)
    job = queue.get(args.job_id, _table_arg(args.kind))
    if job is None:
        raise CliError(f"no {args.kind} job {args.job_id}")
    _print_json({"job": job.model_dump(mode="json"),
                 "events": [e.model_dump(mode="json") for e in queue.events(args.job_id)]})
    return 0


def cmd_jobs_requeue(settings: Settings, args: argparse.Namespace) -> int:
    queue = _queue(settings)
    if not queue.requeue(args.job_id, _table_arg(args.kind)):
        job = queue.get(args.job_id, _table_arg(args.kind))
        state = "does not exist" if job is None else f"is {job.status}"
        raise CliError(f"not requeued: job {args.job_id} {state} (only failed, stale and dead_letter jobs requeue)")
    print(f"requeued {args.job_id}")
    return 0


def cmd_jobs_depth(settings: Settings, args: argparse.Namespace) -> int:
    _print_json(_queue(settings).depth())
    return 0


def cmd_usage(settings: Settings, args: argparse.Namespace) -> int:
    """Model tokens and cost per organization and UTC day; a cost with unpriced tokens is a lower bound,
    printed as such (never as a complete figure), and a day with no price at all says "unknown"."""
    rows = _queue(settings).usage(days=args.days, organization_id=args.org)
    for r in rows:
        r["cost_known"] = r["unpriced_calls"] == 0 and r["unpriced_tokens"] == 0
        r["priced_cost_usd"] = r["cost_usd"]  # the priced part: all of it only when cost_known
        if not r["cost_known"]:
            r["cost_usd"] = None
    if args.json:
        _print_json(rows)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("day", "organization", "calls", "tokens", "cost (USD)", "unpriced tokens")
    for r in rows:
        cost = (f"{r['cost_usd']:.4f}" if r["cost_known"]
                else f"unknown (priced part {r['priced_cost_usd']:.4f})")
        table.add_row(str(r["day"]), r["organization"], str(r["calls"]), str(r["tokens"]), cost,
                      str(r["unpriced_tokens"]))
    Console().print(table)
    return 0


# -- courses (catalog) ------------------------------------------------------------------------------
def cmd_courses_list(settings: Settings, args: argparse.Namespace) -> int:
    """The catalog as an operator sees it (every organization unless --org), filtered like the API."""
    import getpass

    from ignite_dagster import db
    from ignite_dagster.auth import Principal
    from ignite_dagster.catalog.listing import list_courses

    url = _database_url(settings)
    db.check(url)
    entries = list_courses(url, Principal.operator(f"cli:{getpass.getuser()}"), tags=args.tag or [],
                           visibility=args.visibility, subject=args.subject, grade_band=args.grade_band,
                           organization_id=args.org, limit=args.limit)
    if args.json:
        _print_json([e.model_dump(mode="json") for e in entries])
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("course", "organization", "title", "visibility", "version", "items", "tags")
    for e in entries:
        table.add_row(e.course_id, str(e.organization_id), e.title, e.visibility, str(e.content_version),
                      str(e.item_count), ", ".join(e.tags))
    Console().print(table)
    return 0


def cmd_courses_images(settings: Settings, args: argparse.Namespace) -> int:
    """Queue images for named targets of an existing course of --org (as the API route does)."""
    from ignite_dagster import db
    from ignite_dagster.media.targets import CourseNotFound, UnknownTarget, request_course_images
    from ignite_dagster.storage import open_store

    if not settings.images_configured:
        raise CliError("not queued: no image model is configured (set IGNITE_IMAGE_MODEL and IGNITE_IMAGE_API_KEY "
                       "or OPENAI_API_KEY)")
    url = _database_url(settings)
    db.check(url)
    import psycopg
    from psycopg.rows import dict_row

    try:
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            result = request_course_images(conn, open_store(settings), organization_id=args.org,
                                           course_id=args.course_id, specs=args.target, style=args.style,
                                           requested_by=args.requested_by)
    except CourseNotFound as exc:
        raise CliError(f"not queued: {exc} in organization {args.org}") from exc
    except UnknownTarget as exc:
        raise CliError(f"not queued: invalid target {exc}") from exc
    _print_json({"courseId": result.course_id, "jobIds": [str(j) for j in result.job_ids], "targets": result.targets,
                 "alreadyAttached": result.already_attached, "alreadyQueued": result.already_queued})
    return 0


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    import time

    from ignite_dagster.local.stack import CrashLoop, Stack, prepare_instance, stop_signals_interrupt

    if args.stop:
        from ignite_dagster.local.embedded import stop_embedded

        print("embedded Postgres stopped" if stop_embedded(settings.home) else "embedded Postgres was not running")
        return 0
    env = prepare_instance(settings)
    log_dir = settings.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    # Ctrl-C, SIGTERM (kill, systemd, docker, CI) and SIGHUP (terminal closed) all stop the whole stack.
    with stop_signals_interrupt(), Stack(env, log_dir=log_dir) as stack:
        stack.start_daemon()
        stack.start_webserver(args.host, args.port)
        print(f"Dagster UI:   http://{args.host}:{args.port}")
        print(f"DATABASE_URL: {env['DATABASE_URL']}")
        print(f"DAGSTER_HOME: {env['DAGSTER_HOME']}   logs: {log_dir}")
        print("enqueue with: ignite orgs create 'My school' --slug my-school; "
              "ignite enqueue --org <id> --course-id addition-demo --subject addition --grade-band 3-5")
        print("Ctrl-C (or SIGTERM, SIGHUP) stops the stack.", flush=True)
        try:
            # A process that dies is started again (runs in flight keep going); only a crash loop ends the stack.
            while True:
                time.sleep(1)
                for name, code in stack.restart_exited():
                    print(f"ignite dev: {name} exited (code {code}); restarted, see {log_dir}", file=sys.stderr)
        except CrashLoop as exc:
            print(f"ignite dev: {exc}; see {log_dir}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as exc:
            print(f"{exc or 'Ctrl-C'}: stopping the daemon, the webserver and their code servers...", flush=True)
            return 0


def cmd_publish(settings: Settings, args: argparse.Namespace) -> int:
    import getpass

    from ignite_dagster import db
    from ignite_dagster.auth import Principal
    from ignite_dagster.catalog.publishing import PublishError, publish_course
    from ignite_dagster.storage import open_store

    url = _database_url(settings)
    db.check(url)
    actor = Principal.operator(args.actor or f"cli:{getpass.getuser()}")
    try:
        result = publish_course(url, open_store(settings), args.course_id, principal_or_actor=actor,
                                change_summary=args.summary)
    except PublishError as exc:
        raise CliError(f"not published: {exc}") from exc
    _print_json(result.model_dump(mode="json", by_alias=True))
    return 0


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    from ignite_dagster.api.server import serve

    serve(settings, host=args.host, port=args.port)
    return 0


def cmd_config(settings: Settings, args: argparse.Namespace) -> int:
    from ignite_dagster.config import settings_table

    for row in settings_table():
        print(f"{row['env']:32} default={row['default'] or '-':24} {row['doc']}")
    return 0


def _lazy(module: str, func: str) -> Callable[[Settings, argparse.Namespace], int]:
    """Commands implemented elsewhere are imported only when run (keeps `ignite --help` fast)."""

    def run(settings: Settings, args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module), func)(settings, args)

    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ignite", description="ignite-dagster: the course factory on Dagster.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dbp = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    dbp.add_parser("migrate", help="apply pending sql/ migrations (each once, under an advisory lock)").set_defaults(func=cmd_db_migrate)
    dbp.add_parser("check", help="fail when the schema is missing or behind").set_defaults(func=cmd_db_check)

    orgs = sub.add_parser("orgs", help="organizations").add_subparsers(dest="orgs_command", required=True)
    oc = orgs.add_parser("create", help="create (or rename) an organization; prints its id")
    oc.add_argument("name")
    oc.add_argument("--slug", required=True, help="unique short name, ^[a-z0-9-]{1,64}$")
    oc.set_defaults(func=cmd_orgs_create)
    orgs.add_parser("list", help="list organizations").set_defaults(func=cmd_orgs_list)

    e = sub.add_parser("enqueue", help="queue a course request; prints the job id")
    e.add_argument("--org", type=UUID, required=True, help="organization id (see `ignite orgs list`)")
    _add_request_flags(e)
    e.add_argument("--priority", type=int, default=100, help="lower runs first")
    e.add_argument("--max-retries", type=int, default=3)
    e.add_argument("--idempotency-key")
    e.add_argument("--requested-by", help="audit text (who asked)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_enqueue)

    jobs = sub.add_parser("jobs", help="inspect and requeue jobs").add_subparsers(dest="jobs_command", required=True)
    jl = jobs.add_parser("list", help="recent jobs")
    jl.add_argument("--kind", choices=["course", "media"], default="course")
    jl.add_argument("--org", type=UUID)
    jl.add_argument("--status")
    jl.add_argument("--course-id")
    jl.add_argument("--limit", type=int, default=50)
    jl.add_argument("--json", action="store_true")
    jl.set_defaults(func=cmd_jobs_list)
    js = jobs.add_parser("show", help="one job with its events")
    js.add_argument("job_id", type=UUID)
    js.add_argument("--kind", choices=["course", "media"], default="course")
    js.set_defaults(func=cmd_jobs_show)
    jr = jobs.add_parser("requeue", help="send a failed, stale or dead_letter job back to pending")
    jr.add_argument("job_id", type=UUID)
    jr.add_argument("--kind", choices=["course", "media"], default="course")
    jr.set_defaults(func=cmd_jobs_requeue)
    jobs.add_parser("depth", help="job counts by status").set_defaults(func=cmd_jobs_depth)

    us = sub.add_parser("usage", help="model tokens and cost per organization and UTC day (unknown cost says so)")
    us.add_argument("--days", type=int, default=7, help="how many days back, today included (default 7)")
    us.add_argument("--org", type=UUID, help="only this organization")
    us.add_argument("--json", action="store_true")
    us.set_defaults(func=cmd_usage)

    courses = sub.add_parser("courses", help="the catalog: list courses, request images for a course").add_subparsers(
        dest="courses_command", required=True)
    cl = courses.add_parser("list", help="catalog rows, newest first (every organization unless --org)")
    cl.add_argument("--org", type=UUID, help="only this organization")
    cl.add_argument("--tag", action="append", help="a tag every listed course carries (repeat for several): "
                    "a free tag, or subject:<slug>, grade-band:<band>, locale:<tag>, strategy:<kind>")
    cl.add_argument("--visibility", choices=["org", "public"])
    cl.add_argument("--subject", help="the course's subject, case-insensitive")
    cl.add_argument("--grade-band", help="e.g. 3-5")
    cl.add_argument("--limit", type=int, default=50)
    cl.add_argument("--json", action="store_true")
    cl.set_defaults(func=cmd_courses_list)
    ci = courses.add_parser("images", help="queue images for named targets of an existing course; prints the jobs")
    ci.add_argument("course_id")
    ci.add_argument("--org", type=UUID, required=True, help="the organization that owns the course")
    ci.add_argument("--target", action="append", required=True,
                    help="study_texts, stimulus:<itemId>|all or options:<itemId>|all (repeat for several)")
    ci.add_argument("--style", help="free style text appended to every prompt")
    ci.add_argument("--requested-by", help="audit text (who asked)")
    ci.set_defaults(func=cmd_courses_images)

    pub = sub.add_parser("publish", help="publish the current course.json as a new immutable version")
    pub.add_argument("course_id")
    pub.add_argument("--summary", help="change summary recorded with the version")
    pub.add_argument("--actor", help="audit name recorded as publisher (default cli:<os user>)")
    pub.set_defaults(func=cmd_publish)

    api = sub.add_parser("api", help="serve the HTTP API (routes mirror the edge functions; OpenAPI at /docs)")
    api.add_argument("--host", help="bind address (default IGNITE_API_HOST)")
    api.add_argument("--port", type=int, help="port (default IGNITE_API_PORT)")
    api.set_defaults(func=cmd_api)

    dev = sub.add_parser("dev", help="the whole local stack: Postgres (embedded without DATABASE_URL), "
                         "migrations, Dagster daemon and webserver")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--stop", action="store_true", help="stop the embedded Postgres and exit")
    dev.set_defaults(func=cmd_dev)

    from ignite_dagster.cli import demo

    demo_parser = sub.add_parser("demo", help="the main job end to end: embedded stack, several offline courses "
                                 "through the real sensors, runs and assets, live progress, summary table")
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(func=_lazy("ignite_dagster.cli.demo", "run_demo"))

    sub.add_parser("config", help="list every setting with its default").set_defaults(func=cmd_config)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        return args.func(settings, args)
    except (CliError, ConfigError) as exc:
        print(f"ignite: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from ignite_dagster.db.migrations import SchemaError

        if isinstance(exc, SchemaError):
            print(f"ignite: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
