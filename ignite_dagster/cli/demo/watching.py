"""Watching the demo's jobs until each is terminal, with the phases a first start goes through: the daemon
loading the code location, the course sensor claiming the jobs, the runs generating.

Two sources, neither of them SQL of the CLI's own: the job rows come from the queue
(``ignite_dagster.queue.watching``), and "the daemon's sensors are ticking" from the Dagster instance
(``ignite_dagster.defs.sensor_ticks``: the instance's API, not Dagster's tables; the one import of the
Dagster layer the CLI may make, see that module and pyproject.toml's contract).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live

from ignite_dagster.cli.demo import rendering
from ignite_dagster.cli.demo.stack import DemoStack, ui_ready
from ignite_dagster.queue import CourseJob, JobQueue
from ignite_dagster.queue.watching import course_jobs_now

POLL_SECONDS = 0.3
TERMINAL = ("done", "dead_letter")


class DaemonExited(Exception):
    """The daemon died while the demo waited."""


@dataclass(frozen=True)
class Watched:
    jobs: list[CourseJob]  # the final rows, in demo order
    ui_url: str | None  # the UI's address once it answered (--keep-running), else None


def all_terminal(jobs) -> bool:
    return all(job.status in TERMINAL for job in jobs)


def watch(console: Console, stack: DemoStack, queue: JobQueue, jobs: list[CourseJob], *, timeout: float,
          sensor_interval: float, ui: tuple[str, int] | None = None) -> Watched:
    """Live progress until every job is terminal or ``timeout`` seconds passed; DaemonExited if the daemon
    dies first. ``ui``: the (host, port) of the webserver started with the daemon, announced once it answers."""
    ids = [job.id for job in jobs]
    board = rendering.Board(console, jobs)  # one status line (spinner + phase) above the bars
    started = time.monotonic()
    deadline = started + timeout
    phases = {
        "daemon": "starting the Dagster daemon (it loads the code location: 10–20 s on a first start)…",
        "claim": f"waiting for course_jobs_sensor to claim the jobs (it ticks every {sensor_interval} s)…",
        "run": "generating…",
    }
    state = "daemon"
    ui_url = None
    rows: dict = {}
    env = stack.stack.env
    with Live(board, console=console, refresh_per_second=10) as live, queue.connection() as conn, \
            contextlib.ExitStack() as opened:
        say = live.console.print
        ticks = ticks0 = None
        while True:
            rows = course_jobs_now(conn, ids)
            if ticks is None and not all_terminal(rows.values()):
                # opened on the first poll that needs it (importing dagster takes seconds: not when every job
                # had finished already), right after the daemon started, before it can have ticked
                from ignite_dagster.defs.sensor_ticks import open_sensor_ticks

                board.status(f"[bold]0/{len(ids)} done[/] · 0 s · [cyan]{phases[state]}[/]")
                ticks = opened.enter_context(open_sensor_ticks(env["DAGSTER_HOME"], env["DATABASE_URL"]))
                ticks0 = ticks.newest()
            elapsed = time.monotonic() - started
            any_claimed = any(j.status != "pending" or j.attempt > 0 for j in rows.values())
            if state == "daemon" and (any_claimed or (ticks is not None and ticks.newest() > ticks0)):
                say(f"{rendering.OK} Dagster daemon up, sensors ticking ({elapsed:.1f} s)")
                state = "claim"
            if state == "claim" and not any(j.status == "pending" for j in rows.values()):
                say(f"{rendering.OK} course_jobs_sensor claimed the jobs ({elapsed:.1f} s); generate_courses "
                    "run: select_strategy → build_skeleton → fill → validate_normalize → repair → persist")
                state = "run"
            done = sum(j.status == "done" for j in rows.values())
            board.status(f"[bold]{done}/{len(rows)} done[/] · {elapsed:.0f} s · [cyan]{phases[state]}[/]")
            for job in rows.values():
                board.update(job)
            if all_terminal(rows.values()):
                break
            daemon = stack.procs["daemon"]
            if daemon.poll() is not None:
                board.active = False
                raise DaemonExited(f"the Dagster daemon exited (status {daemon.returncode}) before the courses "
                                   f"finished; see {stack.log_dir / 'daemon.log'}")
            if ui is not None and ui_url is None and ui_ready(*ui):
                ui_url = f"http://{ui[0]}:{ui[1]}"
                say(f"{rendering.OK} Dagster UI  {ui_url}/runs (watch the runs live)")
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_SECONDS)
        board.active = False  # the final frame: the bars only
    if not console.is_terminal:  # the last frame printed into a file or pipe ends without a newline
        console.line()
    total = time.monotonic() - started
    unfinished = [j for j in rows.values() if j.status not in TERMINAL]
    if unfinished:
        console.print(f"[red]timed out after {timeout:.0f} s[/]: {len(unfinished)} course job(s) "
                      "not finished (--timeout raises the limit)")
        if state == "daemon":  # the daemon never got its sensors going: its log says why
            rendering.print_log_tail(console, *stack.log_tail("daemon"))
    else:
        console.print(f"{rendering.OK} all {len(rows)} jobs finished {total:.1f} s after the daemon started")
    return Watched([rows[i] for i in ids], ui_url)
