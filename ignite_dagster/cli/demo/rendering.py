"""Everything the demo prints: the set-up lines, the live board (a status line and one bar per course),
the summary table, how to open the Dagster UI, and the failures. Tests and the README quote some of these
lines ("N/N courses done and valid", "✓ valid", "already finished: nothing to start"): they change here only.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, TaskProgressColumn, TextColumn
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from ignite_dagster.cli.demo.checking import CourseCheck
from ignite_dagster.cli.demo.scenario import Enqueued
from ignite_dagster.cli.demo.stack import redact
from ignite_dagster.config import REPO_ROOT, Settings
from ignite_dagster.queue import CourseJob

OK = "[green]✓[/]"


def make_console() -> Console:
    # Piped into a file or a CI log: no terminal width to respect, so room for the one-line table.
    wide = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
    return Console(highlight=False, width=160 if wide else None)


def seconds(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    return f"{ms / 1000:.1f} s" if ms < 100_000 else f"{ms / 1000:.0f} s"


def preparing(settings: Settings) -> str:
    """The spinner's text while the database comes up."""
    what = (f"starting the embedded Postgres under {settings.home / 'pgdata'} (first start: a few seconds)"
            if not settings.database_url else "connecting to DATABASE_URL")
    return f"{what}, applying migrations…"


def print_prepared(c: Console, settings: Settings, env: dict[str, str], log_dir: Path, keep_running: bool) -> None:
    embedded = not settings.database_url
    c.print(f"{OK} database   {'embedded Postgres, ' if embedded else ''}{redact(env['DATABASE_URL'])}")
    c.print(f"{OK} dagster    DAGSTER_HOME={env['DAGSTER_HOME']}")
    if settings.storage_backend == "local":
        c.print(f"{OK} storage    {settings.local_storage_root()}")
    else:
        c.print(f"{OK} storage    s3 ({settings.s3_endpoint_url or 'AWS'})")
    c.print(f"  logs       {log_dir}/daemon.log" + (" and webserver.log" if keep_running else ""))


def print_enqueued(c: Console, enqueued: Enqueued, org, tag: str, model_configured: bool) -> None:
    notes = []
    if enqueued.replayed:
        notes.append(f"{enqueued.replayed} already enqueued under tag {tag}, re-attached")
    if enqueued.reattached:
        notes.append(f"{enqueued.reattached} still queued from an earlier demo, re-attached")
    c.print(f"{OK} jobs       {len(enqueued.jobs)} courses for organization 'demo' ({org}), tag {tag}: "
            + "; ".join([f"{enqueued.new} enqueued", *notes]))
    for spec, job in enqueued.jobs:
        c.print(f"    {job.course_id:<24} {spec.subject} · grades {spec.grade_band} · {spec.mode} · {spec.strategy}",
                style="dim")
    if not model_configured:
        c.print("  [dim]no model configured (OPENAI_API_KEY + IGNITE_TEXT_MODEL): every demo course comes from "
                "an offline pack; with a model the demo adds one model-filled course[/]")


# -- the live board ----------------------------------------------------------------------------------
class Board:
    """What the live display shows: a spinner with the current phase, then one bar per course."""

    def __init__(self, console: Console, jobs: Sequence[CourseJob]):
        width = max(len(job.course_id) for job in jobs)
        self.progress = Progress(
            _IconColumn(),
            TextColumn(f"{{task.description:<{width}}}"),
            BarColumn(bar_width=24),
            TaskProgressColumn(),
            TextColumn("{task.fields[state]}"),
            console=console,
        )
        self.tasks = {job.id: self.progress.add_task(job.course_id, total=100, state=job_state(job)) for job in jobs}
        self.spinner = Spinner("dots", text="")
        self.active = True

    def status(self, markup: str) -> None:
        text = Text.from_markup(markup, overflow="ellipsis")
        text.no_wrap = True  # one line, cut with … on a narrow terminal
        self.spinner.update(text=text)

    def update(self, job: CourseJob) -> None:
        icon = {"done": OK, "dead_letter": "[red]✗[/]"}.get(job.status)
        self.progress.update(self.tasks[job.id], completed=100 if job.status == "done" else (job.progress_percent or 0),
                             state=job_state(job), icon=icon)

    def __rich__(self):
        return Group(self.spinner, self.progress) if self.active else self.progress


class _IconColumn(ProgressColumn):
    """A spinner while a row is live, then the row's own icon (✓ done, ✗ dead letter)."""

    def __init__(self):
        super().__init__()
        self.spinner = SpinnerColumn()

    def render(self, task):
        icon = task.fields.get("icon")
        return Text.from_markup(icon) if icon else self.spinner.render(task)


def job_state(job: CourseJob) -> str:
    """A bar's last column: what the job is doing now."""
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


# -- the summary -------------------------------------------------------------------------------------
def verdict(check: CourseCheck) -> str:
    job = check.job
    if check.state == "valid":
        text = f"{OK} valid" + (f" ({check.warnings} warnings)" if check.warnings else "")
        if check.owner != str(job.id):  # a concurrent job for the same course wrote last: also valid
            text += f" [dim](file from job {str(check.owner)[:8]})[/]"
        return text
    if check.state == "invalid":
        return f"[red]invalid: {', '.join(check.errors)}[/]"
    if check.state == "missing":
        return "[red]done, but course.json is missing[/]"
    return f"[red]{job.status}[/]" + (f" {job.reason_code}" if job.reason_code else "")


def _table(checks: Sequence[CourseCheck], tag: str, path_column: bool) -> Table:
    # Narrow terminals: the path goes under the course id instead of a column of its own.
    good = sum(check.ok for check in checks)
    table = Table(title=f"[bold]ignite demo {tag}: {good}/{len(checks)} courses done and valid[/]",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    names = ["course", "strategy", "pack", "mode", "items", "duration", "path", "status"]
    if not path_column:
        names.remove("path")
        names[0] = "course / path"
    for name in names:
        table.add_column(name, justify="right" if name in ("items", "duration") else "left",
                         no_wrap=name not in ("pack", "path", "course / path"), overflow="fold")
    for check in checks:
        job, summary = check.job, check.job.summary or {}
        path = job.result_path or "-"
        cells = [job.course_id if path_column else f"{job.course_id}\n[dim]{path}[/]",
                 summary.get("strategy") or job.strategy or "-",
                 summary.get("packId") or (f"model {job.model}" if job.model else "-"), job.mode,
                 str(summary.get("items", "-")), seconds(job.generation_duration_ms)]
        table.add_row(*cells, *([path] if path_column else []), verdict(check))
    return table


def print_summary(c: Console, checks: Sequence[CourseCheck], tag: str, settings: Settings, env: dict[str, str],
                  port: int, keep_running: bool) -> None:
    table = _table(checks, tag, path_column=True)
    unclamped = c.options.update_width(10_000)
    if Measurement.get(c, unclamped, table).maximum > c.width:
        table = _table(checks, tag, path_column=False)
    c.print()
    c.print(table)
    spans = [ch.job.processing_duration_ms for ch in checks if ch.job.processing_duration_ms is not None]
    if spans:
        c.print(f"duration: time in the generation stages (strategy to persist). From the sensor's claim to done took "
                f"{seconds(min(spans))}–{seconds(max(spans))} per job (mostly the run's process start).",
                style="dim")
    if settings.storage_backend == "local":
        c.print(f"files: {settings.local_storage_root()}/<path>", style="dim")
    c.print()
    if not keep_running:
        c.print("[bold]See the runs, the course_content / course_metadata materializations and the schema checks "
                "in the Dagster UI[/] (same instance):")
        for line in ui_commands(settings, env, port):
            c.print(f"  {line}", soft_wrap=True)
        c.print(f"  then open http://127.0.0.1:{port}/assets/course_content (partitions tab: one per course)")
        if not settings.database_url:
            c.print("  [dim]the embedded Postgres keeps running for that; stop it with "
                    "`python3 dev.py ignite dev --stop`[/]")


def ui_commands(settings: Settings, env: dict[str, str], port: int) -> list[str]:
    """How to open the Dagster UI on the demo's instance afterwards: `ignite dev`, or the webserver alone."""
    q = shlex.quote
    prefix = []
    if os.environ.get("IGNITE_HOME"):
        prefix.append(f"IGNITE_HOME={q(str(settings.home))}")
    if settings.database_url:
        prefix.append(f"DATABASE_URL={q(env['DATABASE_URL'])}")
    port_arg = f" --port {port}" if port != 3000 else ""
    pre = " ".join(prefix) + (" " if prefix else "")
    webserver = (f"DAGSTER_HOME={q(env['DAGSTER_HOME'])} DATABASE_URL={q(env['DATABASE_URL'])} "
                 f"{REPO_ROOT / '.venv/bin/dagster-webserver'} -w {REPO_ROOT / 'workspace.yaml'} -p {port}")
    return [
        f"{pre}python3 dev.py ignite dev{port_arg}     [dim](daemon + UI; Ctrl-C stops them)[/]",
        f"[dim]or, the UI alone:[/] {webserver}",
    ]


# -- failures ----------------------------------------------------------------------------------------
def print_failures(c: Console, jobs: Sequence[CourseJob], log_dir: Path) -> None:
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
    c.print(f"[red]demo failed[/]; daemon log: {log_dir / 'daemon.log'} (run logs are in the Dagster UI: Runs)")


def print_log_tail(c: Console, log: Path, tail: list[str]) -> None:
    if tail:
        c.print(f"--- last {len(tail)} lines of {log} ---", style="dim")
        for line in tail:
            c.print(line, markup=False, highlight=False, soft_wrap=True)


def print_interrupted_hint(c: Console, settings: Settings) -> None:
    c.print("Jobs still queued are picked up by the next `ignite demo` (or `ignite dev`); a job that was mid-run is "
            f"retried once it goes stale (IGNITE_STALE_TIMEOUT_SECONDS={settings.stale_timeout_seconds:.0f}) "
            "while a daemon runs.")
