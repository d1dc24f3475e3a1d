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
   checks every course.json (parse + validate) and prints a summary table and the command that opens the
   Dagster UI on the same instance.

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

This module is imported when the CLI builds its parser, so its top level stays light: no dagster, no
psycopg, no rich until ``run_demo`` runs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

POLL_SECONDS = 0.3
TERMINAL = ("done", "dead_letter")


@dataclass(frozen=True)
class DemoCourse:
    """One course the demo asks for; ``topic`` + band make its course id."""

    topic: str
    subject: str
    grade_band: str
    mode: str
    strategy: str = "deterministic"
    items_per_group: int = 6

    @property
    def course_id(self) -> str:
        return f"demo-{self.topic}-{self.grade_band.lower()}"


# Offline: every one is compiled from a pack shipped in ignite_dagster/generation/packs/.
OFFLINE_COURSES: tuple[DemoCourse, ...] = (
    DemoCourse("addition", "addition", "3-5", "options"),
    DemoCourse("division", "division", "6-8", "numeric"),
    DemoCourse("multiplication", "multiplication", "K-2", "numeric"),
    DemoCourse("subtraction", "subtraction", "3-5", "options"),
    DemoCourse("water-cycle", "water cycle", "3-5", "options"),
    DemoCourse("ancient-egypt", "ancient egypt", "6-8", "options"),
)
# Only with a model configured: skeleton + model fill (small, to keep the cost to a few cents at most).
MODEL_COURSE = DemoCourse("photosynthesis", "photosynthesis", "6-8", "options", strategy="llm", items_per_group=3)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-running", action="store_true",
                        help="also start the Dagster UI, print its URL and keep the daemon and the UI running "
                        "until Ctrl-C")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for every course to finish once the daemon starts (default 300)")
    parser.add_argument("--port", type=int, default=3000, help="port of the Dagster UI (default 3000)")
    parser.add_argument("--host", default="127.0.0.1", help="address the UI binds with --keep-running")
    parser.add_argument("--tag", type=_tag,
                        help="names this run in the idempotency keys (default: the start time, MMDD-HHMMSS). "
                        "Pass an earlier run's tag to re-attach to its jobs instead of enqueueing new ones.")


def _tag(value: str) -> str:
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,24}", value):
        raise argparse.ArgumentTypeError("use 1-25 characters a-z, 0-9 and '-'")
    return value


def run_demo(settings, args) -> int:
    from ignite_dagster.cli.errors import CliError

    if settings.env == "production":
        raise CliError("`ignite demo` writes demo courses and is for dev and test only, not IGNITE_ENV=production")
    return _Demo(settings, args).run()


# -- helpers (no heavy imports at module level) ------------------------------------------------------
def _redact(url: str) -> str:
    """DATABASE_URL for display: the password hidden."""
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _seconds(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    return f"{ms / 1000:.1f} s" if ms < 100_000 else f"{ms / 1000:.0f} s"


def ensure_demo_org(url: str):
    """The organization with slug ``demo``: reused when present, created otherwise; returns its id."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO organizations (name, slug) VALUES ('Demo', 'demo') ON CONFLICT (slug) DO NOTHING")
        return conn.execute("SELECT id FROM organizations WHERE slug = 'demo'").fetchone()[0]


class _Interrupted(Exception):
    """The daemon died while the demo waited."""


class _Fatal(Exception):
    """A setup step failed; the message says what to do (printed without a traceback, exit status 2)."""


class _Demo:
    def __init__(self, settings, args):
        import os
        import sys

        from rich.console import Console

        self.settings = settings
        self.args = args
        # Piped into a file or a CI log: no terminal width to respect, so room for the one-line table.
        wide = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
        self.console = Console(highlight=False, width=160 if wide else None)
        self.tag = args.tag or _default_tag()
        self.courses = list(OFFLINE_COURSES) + ([MODEL_COURSE] if settings.model_configured else [])
        self.stack = None
        self.log_dir = settings.home / "logs"
        self.log_offsets: dict[str, int] = {}
        self.ui_url: str | None = None

    # -- the whole demo ----------------------------------------------------------------------------
    def run(self) -> int:
        from ignite_dagster.local.stack import stop_signals_interrupt

        # `kill <pid>` (SIGTERM) and a closed terminal (SIGHUP): the same clean-up path as Ctrl-C
        with stop_signals_interrupt():
            try:
                return self._run()
            except _Fatal as exc:
                self.console.print(f"[red]ignite demo: {exc}[/]", soft_wrap=True)
                return 2
            except KeyboardInterrupt:
                self.console.print("\n[yellow]interrupted[/]: stopping the processes the demo started…")
                self._interrupted_hint()
                return 130
            finally:
                self._stop()

    def _run(self) -> int:
        c = self.console
        a = self.args
        c.rule("[bold]ignite demo[/] · requests → Postgres queue → Dagster sensor → runs → assets")
        if a.keep_running and not _port_free(a.host, a.port):
            c.print(f"[red]port {a.port} on {a.host} is already in use[/] (another Dagster UI?). "
                    f"Pick a free one with --port.")
            return 2

        env = self._prepare()
        url = env["DATABASE_URL"]
        org = ensure_demo_org(url)
        jobs = self._enqueue(url, org)
        if all(job.status in TERMINAL for _, job in jobs) and not a.keep_running:
            c.print(f"[green]✓[/] every job of tag {self.tag} has already finished: nothing to start")
            finished = [job for _, job in jobs]
        else:
            self._start(env)
            try:
                finished = self._watch(url, jobs)
            except _Interrupted as exc:
                c.print(f"[red]{exc}[/]")
                self._print_log_tail("daemon")
                return 1
        rows, ok = self._verify(finished)
        self._summary(rows, env)
        if not ok:
            self._explain_failures(finished)
        if a.keep_running:
            try:
                self._keep_running()
            except KeyboardInterrupt:  # the normal way to end --keep-running: not a failure
                c.print("\nCtrl-C: stopping the daemon and the UI…")
        return 0 if ok else 1

    # -- steps -------------------------------------------------------------------------------------
    def _prepare(self) -> dict[str, str]:

        import psycopg

        from ignite_dagster.local.stack import prepare_instance

        s = self.settings
        embedded = not s.database_url
        what = (f"starting the embedded Postgres under {s.home / 'pgdata'} (first start: a few seconds)"
                if embedded else "connecting to DATABASE_URL")
        with self.console.status(f"{what}, applying migrations…"):
            try:
                env = prepare_instance(s)
            except psycopg.OperationalError as exc:
                where = f"DATABASE_URL ({_redact(s.database_url)})" if s.database_url else "the embedded Postgres"
                hint = ("unset DATABASE_URL to use the embedded Postgres under IGNITE_HOME" if s.database_url
                        else f"see {s.home / 'pgdata' / 'log'} or start over with a fresh IGNITE_HOME")
                raise _Fatal(f"cannot connect to {where}: {str(exc).strip()}\n{hint}") from exc
        self.log_dir.mkdir(parents=True, exist_ok=True)
        c = self.console
        c.print(f"[green]✓[/] database   {'embedded Postgres, ' if embedded else ''}{_redact(env['DATABASE_URL'])}")
        c.print(f"[green]✓[/] dagster    DAGSTER_HOME={env['DAGSTER_HOME']}")
        if s.storage_backend == "local":
            c.print(f"[green]✓[/] storage    {s.local_storage_root()}")
        else:
            c.print(f"[green]✓[/] storage    s3 ({s.s3_endpoint_url or 'AWS'})")
        c.print(f"  logs       {self.log_dir}/daemon.log" + (" and webserver.log" if self.args.keep_running else ""))
        return env

    def _enqueue(self, url: str, org):
        from ignite_dagster.course.request import CourseRequest
        from ignite_dagster.course_jobs.submit import submit_course_request
        from ignite_dagster.queue import CourseJob, JobQueue
        from ignite_dagster.storage import open_store

        queue, store = JobQueue(url), open_store(self.settings)
        # Jobs an interrupted demo left queued for these courses: re-attach instead of enqueueing twice.
        with queue.connection() as conn:
            leftover = {}
            for row in conn.execute(
                "SELECT * FROM ai_course_jobs WHERE organization_id = %s AND course_id = ANY(%s) AND status = 'pending' "
                "AND idempotency_key LIKE 'demo:%%' AND idempotency_key NOT LIKE %s ORDER BY created_at",
                (org, [c.course_id for c in self.courses], f"demo:{self.tag}:%"),
            ).fetchall():
                leftover.setdefault(row["course_id"], CourseJob(**row))
        jobs, replayed = [], 0
        for spec in self.courses:
            if spec.course_id in leftover:
                jobs.append((spec, leftover[spec.course_id]))
                continue
            request = CourseRequest(course_id=spec.course_id, subject=spec.subject, grade_band=spec.grade_band,
                                    mode=spec.mode, strategy=spec.strategy, items_per_group=spec.items_per_group)
            result = submit_course_request(queue, store, request, organization_id=org,
                                           idempotency_key=f"demo:{self.tag}:{spec.course_id}",
                                           requested_by="ignite demo")
            replayed += result.replayed
            jobs.append((spec, result.job))
        notes = []
        if replayed:
            notes.append(f"{replayed} already enqueued under tag {self.tag}, re-attached")
        if leftover:
            notes.append(f"{len(leftover)} still queued from an earlier demo, re-attached")
        new = len(jobs) - replayed - len(leftover)
        c = self.console
        c.print(f"[green]✓[/] jobs       {len(jobs)} courses for organization 'demo' ({org}), tag {self.tag}: "
                + "; ".join([f"{new} enqueued", *notes]))
        for spec, job in jobs:
            c.print(f"    {job.course_id:<24} {spec.subject} · grades {spec.grade_band} · {spec.mode} · {spec.strategy}",
                    style="dim")
        if not self.settings.model_configured:
            c.print("  [dim]no model configured (OPENAI_API_KEY + IGNITE_TEXT_MODEL): every demo course comes from "
                    "an offline pack; with a model the demo adds one model-filled course[/]")
        return jobs

    def _start(self, env: dict[str, str]) -> None:
        from ignite_dagster.local.stack import Stack

        self.stack = Stack(env, log_dir=self.log_dir)
        names = ["daemon"] + (["webserver"] if self.args.keep_running else [])
        for name in names:
            log = self.log_dir / f"{name}.log"
            with open(log, "ab") as f:
                f.write(f"\n===== ignite demo {self.tag}: starting {name} =====\n".encode())
            self.log_offsets[name] = log.stat().st_size
        self.stack.start_daemon()
        if self.args.keep_running:
            self.stack.start_webserver(self.args.host, self.args.port)

    def _watch(self, url: str, jobs):
        """Live progress until every job is terminal; returns the final job rows (in demo order)."""
        import time

        import psycopg
        from psycopg.rows import dict_row
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        from ignite_dagster.queue import CourseJob

        ids = [job.id for _, job in jobs]
        width = max(len(job.course_id) for _, job in jobs)
        progress = Progress(
            _icon_column(),
            TextColumn(f"{{task.description:<{width}}}"),
            BarColumn(bar_width=24),
            TaskProgressColumn(),
            TextColumn("{task.fields[state]}"),
            console=self.console,
        )
        tasks = {job.id: progress.add_task(job.course_id, total=100, state=_job_state(job)) for _, job in jobs}
        board = _Board(progress)  # one status line (spinner + phase) above the bars
        started = time.monotonic()
        deadline = started + self.args.timeout
        interval = self.settings.sensor_interval_seconds
        state = "daemon"
        rows: dict = {}
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn, \
                Live(board, console=self.console, refresh_per_second=10) as live:
            say = live.console.print
            ticks0 = _sensor_ticks(conn)
            while True:
                rows = {r["id"]: CourseJob(**r) for r in
                        conn.execute("SELECT * FROM ai_course_jobs WHERE id = ANY(%s)", (ids,)).fetchall()}
                elapsed = time.monotonic() - started
                any_claimed = any(j.status != "pending" or j.attempt > 0 for j in rows.values())
                if state == "daemon" and (any_claimed or _sensor_ticks(conn) > ticks0):
                    say(f"[green]✓[/] Dagster daemon up, sensors ticking ({elapsed:.1f} s)")
                    state = "claim"
                if state == "claim" and not any(j.status == "pending" for j in rows.values()):
                    say(f"[green]✓[/] course_jobs_sensor claimed the jobs ({elapsed:.1f} s); generate_courses "
                        "run: select_strategy → build_skeleton → fill → validate_normalize → repair → persist")
                    state = "run"
                phase = {
                    "daemon": "starting the Dagster daemon (it loads the code location: 10–20 s on a first start)…",
                    "claim": f"waiting for course_jobs_sensor to claim the jobs (it ticks every {interval} s)…",
                    "run": "generating…",
                }[state]
                done = sum(j.status == "done" for j in rows.values())
                board.status(f"[bold]{done}/{len(rows)} done[/] · {elapsed:.0f} s · [cyan]{phase}[/]")
                for job_id, task in tasks.items():
                    job = rows[job_id]
                    icon = {"done": "[green]✓[/]", "dead_letter": "[red]✗[/]"}.get(job.status)
                    progress.update(task, completed=100 if job.status == "done" else (job.progress_percent or 0),
                                    state=_job_state(job), icon=icon)
                if all(j.status in TERMINAL for j in rows.values()):
                    break
                daemon = self.stack.procs["daemon"]
                if daemon.poll() is not None:
                    board.active = False
                    raise _Interrupted(f"the Dagster daemon exited (status {daemon.returncode}) before the courses "
                                       f"finished; see {self.log_dir / 'daemon.log'}")
                if self.args.keep_running and self.ui_url is None and _ui_ready(self.args.host, self.args.port):
                    self.ui_url = f"http://{self.args.host}:{self.args.port}"
                    say(f"[green]✓[/] Dagster UI  {self.ui_url}/runs (watch the runs live)")
                if time.monotonic() > deadline:
                    break
                time.sleep(POLL_SECONDS)
            board.active = False  # the final frame: the bars only
        if not self.console.is_terminal:  # the last frame printed into a file or pipe ends without a newline
            self.console.line()
        total = time.monotonic() - started
        unfinished = [j for j in rows.values() if j.status not in TERMINAL]
        if unfinished:
            self.console.print(f"[red]timed out after {self.args.timeout:.0f} s[/]: {len(unfinished)} course job(s) "
                               "not finished (--timeout raises the limit)")
            if state == "daemon":  # the daemon never got its sensors going: its log says why
                self._print_log_tail("daemon")
        else:
            self.console.print(f"[green]✓[/] all {len(rows)} jobs finished {total:.1f} s after the daemon started")
        return [rows[i] for i in ids]

    def _verify(self, jobs):
        """Each done course's course.json, read back from storage, must parse and validate without errors."""
        import json

        from ignite_dagster.course.model import parse_course
        from ignite_dagster.course.validation import validate_course
        from ignite_dagster.storage import NotFound, open_store
        from ignite_dagster.storage.keys import course_path

        store = open_store(self.settings)
        rows, ok = [], True
        for job in jobs:
            summary = job.summary or {}
            verdict = None
            if job.status == "done":
                try:
                    doc = json.loads(store.get(job.result_path or course_path(job.course_id)).data)
                    course, issues = parse_course(doc)
                    if course is not None:
                        issues = validate_course(course, None, None)
                    errors = sorted({i.code for i in issues if i.severity == "error"})
                    owner = (doc.get("generation") or {}).get("jobId")
                    if errors:
                        verdict = f"[red]invalid: {', '.join(errors)}[/]"
                    else:
                        verdict = "[green]✓ valid[/]" + (f" ({len(issues)} warnings)" if issues else "")
                        if owner != str(job.id):  # a concurrent job for the same course wrote last: also valid
                            verdict += f" [dim](file from job {str(owner)[:8]})[/]"
                except NotFound:
                    verdict = "[red]done, but course.json is missing[/]"
            if verdict is None:
                verdict = f"[red]{job.status}[/]" + (f" {job.reason_code}" if job.reason_code else "")
            if not verdict.startswith("[green]"):
                ok = False
            rows.append((job, summary, verdict))
        return rows, ok

    def _summary(self, rows, env) -> None:
        from rich import box
        from rich.measure import Measurement
        from rich.table import Table

        good = sum(v.startswith("[green]") for _, _, v in rows)

        def build(path_column: bool) -> Table:
            # Narrow terminals: the path goes under the course id instead of a column of its own.
            table = Table(title=f"[bold]ignite demo {self.tag}: {good}/{len(rows)} courses done and valid[/]",
                          title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
            names = ["course", "strategy", "pack", "mode", "items", "duration", "path", "status"]
            if not path_column:
                names.remove("path")
                names[0] = "course / path"
            for name in names:
                table.add_column(name, justify="right" if name in ("items", "duration") else "left",
                                 no_wrap=name not in ("pack", "path", "course / path"), overflow="fold")
            for job, summary, verdict in rows:
                path = job.result_path or "-"
                cells = [job.course_id if path_column else f"{job.course_id}\n[dim]{path}[/]",
                         summary.get("strategy") or job.strategy or "-",
                         summary.get("packId") or (f"model {job.model}" if job.model else "-"), job.mode,
                         str(summary.get("items", "-")), _seconds(job.generation_duration_ms)]
                table.add_row(*cells, *([path] if path_column else []), verdict)
            return table

        table = build(path_column=True)
        unclamped = self.console.options.update_width(10_000)
        if Measurement.get(self.console, unclamped, table).maximum > self.console.width:
            table = build(path_column=False)
        c = self.console
        c.print()
        c.print(table)
        spans = [j.processing_duration_ms for j, _, _ in rows if j.processing_duration_ms is not None]
        if spans:
            c.print(f"duration: time in the generation stages (strategy to persist). From the sensor's claim to done took "
                    f"{_seconds(min(spans))}–{_seconds(max(spans))} per job (mostly the run's process start).",
                    style="dim")
        if self.settings.storage_backend == "local":
            c.print(f"files: {self.settings.local_storage_root()}/<path>", style="dim")
        c.print()
        if not self.args.keep_running:
            c.print("[bold]See the runs, the course_content / course_metadata materializations and the schema checks "
                    "in the Dagster UI[/] (same instance):")
            for line in self._ui_commands(env):
                c.print(f"  {line}", soft_wrap=True)
            c.print(f"  then open http://127.0.0.1:{self.args.port}/assets/course_content (partitions tab: one per course)")
            if not self.settings.database_url:
                c.print("  [dim]the embedded Postgres keeps running for that; stop it with "
                        "`python3 dev.py ignite dev --stop`[/]")

    def _ui_commands(self, env) -> list[str]:
        import os

        from ignite_dagster.config import REPO_ROOT

        port = self.args.port
        prefix = []
        if os.environ.get("IGNITE_HOME"):
            prefix.append(f"IGNITE_HOME={_shell_quote(str(self.settings.home))}")
        if self.settings.database_url:
            prefix.append(f"DATABASE_URL={_shell_quote(env['DATABASE_URL'])}")
        port_arg = f" --port {port}" if port != 3000 else ""
        pre = " ".join(prefix) + (" " if prefix else "")
        webserver = (f"DAGSTER_HOME={_shell_quote(env['DAGSTER_HOME'])} DATABASE_URL={_shell_quote(env['DATABASE_URL'])} "
                     f"{REPO_ROOT / '.venv/bin/dagster-webserver'} -w {REPO_ROOT / 'workspace.yaml'} -p {port}")
        return [
            f"{pre}python3 dev.py ignite dev{port_arg}     [dim](daemon + UI; Ctrl-C stops them)[/]",
            f"[dim]or, the UI alone:[/] {webserver}",
        ]

    def _explain_failures(self, jobs) -> None:
        c = self.console
        bad = [j for j in jobs if j.status != "done"]
        if bad:
            c.print(f"[red bold]{len(bad)} course job(s) did not finish done:[/]")
        for j in bad:
            retry = f", retries {j.retry_count}/{j.max_retries}" if j.retry_count else ""
            c.print(f"  [red]✗[/] {j.course_id}: {j.status}{retry} · reason {j.reason_code or '-'} · "
                    f"stage {j.progress_stage or '-'}")
            if j.error:
                c.print(f"      {j.error[:600]}", soft_wrap=True)
            c.print(f"      details: python3 dev.py ignite jobs show {j.id}", soft_wrap=True)
        c.print(f"[red]demo failed[/]; daemon log: {self.log_dir / 'daemon.log'} (run logs are in the Dagster UI: Runs)")

    def _keep_running(self) -> None:
        import time

        c = self.console
        if self.ui_url is None:
            with c.status("starting the Dagster UI…"):
                deadline = time.monotonic() + 120
                while not _ui_ready(self.args.host, self.args.port):
                    web = self.stack.procs["webserver"]
                    if web.poll() is not None or time.monotonic() > deadline:
                        c.print(f"[red]the Dagster UI did not start[/]; see {self.log_dir / 'webserver.log'}")
                        self._print_log_tail("webserver")
                        return
                    time.sleep(0.5)
            self.ui_url = f"http://{self.args.host}:{self.args.port}"
        c.print(f"[bold green]Dagster UI: {self.ui_url}/assets/course_content[/]  (runs: {self.ui_url}/runs)")
        c.print("The daemon and the UI keep running (enqueue more with `python3 dev.py ignite enqueue …`). "
                "Ctrl-C stops them.")
        while all(p.poll() is None for p in self.stack.procs.values()):
            time.sleep(1)
        dead = [n for n, p in self.stack.procs.items() if p.poll() is not None]
        c.print(f"[red]{', '.join(dead)} exited[/]; see {self.log_dir}")

    # -- clean-up and diagnostics ------------------------------------------------------------------
    def _stop(self) -> None:
        if self.stack is None or not self.stack.procs:
            return
        names = ", ".join(self.stack.procs)
        with self.console.status(f"stopping {names}…"):
            stop_stack(self.stack)
        self.console.print(f"[dim]stopped {names}[/]")
        self.stack = None

    def _interrupted_hint(self) -> None:
        self.console.print(
            "Jobs still queued are picked up by the next `ignite demo` (or `ignite dev`); a job that was mid-run is "
            f"retried once it goes stale (IGNITE_STALE_TIMEOUT_SECONDS={self.settings.stale_timeout_seconds:.0f}) "
            "while a daemon runs.")

    def _print_log_tail(self, name: str, lines: int = 25) -> None:
        log = self.log_dir / f"{name}.log"
        if not log.exists():
            return
        with open(log, "rb") as f:
            f.seek(self.log_offsets.get(name, 0))
            text = f.read().decode(errors="replace")
        tail = text.splitlines()[-lines:]
        if tail:
            self.console.print(f"--- last {len(tail)} lines of {log} ---", style="dim")
            for line in tail:
                self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def stop_stack(stack, grace: float = 10.0) -> None:
    """Stop the daemon (and webserver) with their whole process groups (``Stack.stop``)."""
    stack.stop(grace)


def _default_tag() -> str:
    import time

    return time.strftime("%m%d-%H%M%S")


def _sensor_ticks(conn) -> int:
    """The newest sensor tick id in Dagster's storage (0 before the daemon first created its tables)."""
    import psycopg

    try:
        with conn.transaction():
            row = conn.execute("SELECT coalesce(max(id), 0) AS n FROM job_ticks WHERE type = 'SENSOR'").fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    return row["n"]


def _ui_ready(host: str, port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://{host}:{port}/server_info", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class _Board:
    """What the live display shows: a spinner with the current phase, then one bar per course."""

    def __init__(self, progress):
        from rich.spinner import Spinner

        self.progress = progress
        self.spinner = Spinner("dots", text="")
        self.active = True

    def status(self, markup: str) -> None:
        from rich.text import Text

        text = Text.from_markup(markup, overflow="ellipsis")
        text.no_wrap = True  # one line, cut with … on a narrow terminal
        self.spinner.update(text=text)

    def __rich__(self):
        from rich.console import Group

        return Group(self.spinner, self.progress) if self.active else self.progress


def _icon_column():
    """A spinner while a row is live, then the row's own icon (✓ done, ✗ dead letter)."""
    from rich.progress import ProgressColumn, SpinnerColumn
    from rich.text import Text

    class IconColumn(ProgressColumn):
        def __init__(self):
            super().__init__()
            self.spinner = SpinnerColumn()

        def render(self, task):
            icon = task.fields.get("icon")
            return Text.from_markup(icon) if icon else self.spinner.render(task)

    return IconColumn()


def _job_state(job) -> str:
    from rich.markup import escape

    if job.status == "done":
        items = (job.summary or {}).get("items")
        return f"[green]done[/]{f' · {items} items' if items is not None else ''}"
    if job.status == "pending":
        return "[dim]queued, waiting for the sensor[/]"
    if job.status == "processing":
        stage = job.progress_stage or "claimed"
        msg = job.progress_message or ""
        norm = msg.replace(" ", "_")
        if norm == stage:  # "validate normalize" says no more than validate_normalize
            msg = ""
        elif norm.startswith(stage):  # "fill (deterministic)" → fill (deterministic)
            msg = msg[len(stage):]
        elif msg:
            msg = f" · {msg}"
        return f"[cyan]{stage}[/]{escape(msg[:80])}"
    if job.status in ("failed", "stale"):
        return f"[yellow]{job.status}[/] {job.reason_code or ''} · retry {job.retry_count + 1}/{job.max_retries} after backoff"
    return f"[red]{job.status}[/] {job.reason_code or ''}"
