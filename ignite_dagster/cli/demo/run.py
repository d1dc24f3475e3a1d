"""One `ignite demo`, step by step: prepare, the demo organization, enqueue, start the daemon, watch,
check every course, summarize, and stop what it started on every exit path (``__init__`` says what the
demo is; the steps' parts live in the sibling modules named for them)."""

from __future__ import annotations

import argparse
import time

from ignite_dagster.cli.demo import rendering, scenario
from ignite_dagster.cli.demo.checking import check_course
from ignite_dagster.cli.demo.stack import DemoFatal, DemoStack, port_free, prepare, ui_ready
from ignite_dagster.cli.demo.watching import DaemonExited, all_terminal, watch
from ignite_dagster.config import Settings
from ignite_dagster.db.organizations import ensure_organization
from ignite_dagster.local.stack import stop_signals_interrupt
from ignite_dagster.queue import JobQueue
from ignite_dagster.storage import open_store


class Demo:
    def __init__(self, settings: Settings, args: argparse.Namespace):
        self.settings = settings
        self.args = args
        self.console = rendering.make_console()
        self.tag = args.tag or scenario.default_tag()
        self.courses = scenario.demo_courses(settings.model_configured)
        self.stack: DemoStack | None = None
        self.log_dir = settings.home / "logs"
        self.ui_url: str | None = None

    @property
    def _ui(self) -> tuple[str, int] | None:
        return (self.args.host, self.args.port) if self.args.keep_running else None

    def run(self) -> int:
        # `kill <pid>` (SIGTERM) and a closed terminal (SIGHUP): the same clean-up path as Ctrl-C
        with stop_signals_interrupt():
            try:
                return self._run()
            except DemoFatal as exc:
                self.console.print(f"[red]ignite demo: {exc}[/]", soft_wrap=True)
                return 2
            except KeyboardInterrupt:
                self.console.print("\n[yellow]interrupted[/]: stopping the processes the demo started…")
                rendering.print_interrupted_hint(self.console, self.settings)
                return 130
            finally:
                self._stop()

    def _run(self) -> int:
        c, a, s = self.console, self.args, self.settings
        c.rule("[bold]ignite demo[/] · requests → Postgres queue → Dagster sensor → runs → assets")
        if a.keep_running and not port_free(a.host, a.port):
            c.print(f"[red]port {a.port} on {a.host} is already in use[/] (another Dagster UI?). "
                    f"Pick a free one with --port.")
            return 2

        with c.status(rendering.preparing(s)):
            env = prepare(s)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        rendering.print_prepared(c, s, env, self.log_dir, a.keep_running)
        url = env["DATABASE_URL"]
        org = ensure_organization(url, scenario.ORG_NAME, scenario.ORG_SLUG)
        queue, store = JobQueue(url), open_store(s)
        enqueued = scenario.enqueue(queue, store, org, self.courses, self.tag)
        rendering.print_enqueued(c, enqueued, org, self.tag, s.model_configured)
        jobs = [job for _, job in enqueued.jobs]
        if all_terminal(jobs) and not a.keep_running:
            c.print(f"{rendering.OK} every job of tag {self.tag} has already finished: nothing to start")
            finished = jobs
        else:
            self.stack = DemoStack(env, self.log_dir, self.tag)
            self.stack.start(webserver=self._ui)
            try:
                watched = watch(c, self.stack, queue, jobs, timeout=a.timeout,
                                sensor_interval=s.sensor_interval_seconds, ui=self._ui)
            except DaemonExited as exc:
                c.print(f"[red]{exc}[/]")
                rendering.print_log_tail(c, *self.stack.log_tail("daemon"))
                return 1
            finished, self.ui_url = watched.jobs, watched.ui_url
        checks = [check_course(store, job) for job in finished]
        rendering.print_summary(c, checks, self.tag, s, env, a.port, a.keep_running)
        ok = all(check.ok for check in checks)
        if not ok:
            rendering.print_failures(c, finished, self.log_dir)
        if a.keep_running:
            try:
                self._keep_running()
            except KeyboardInterrupt:  # the normal way to end --keep-running: not a failure
                c.print("\nCtrl-C: stopping the daemon and the UI…")
        return 0 if ok else 1

    def _keep_running(self) -> None:
        c, host, port = self.console, self.args.host, self.args.port
        assert self.stack is not None  # with --keep-running the stack is always started
        if self.ui_url is None:
            with c.status("starting the Dagster UI…"):
                deadline = time.monotonic() + 120
                while not ui_ready(host, port):
                    web = self.stack.procs["webserver"]
                    if web.poll() is not None or time.monotonic() > deadline:
                        c.print(f"[red]the Dagster UI did not start[/]; see {self.log_dir / 'webserver.log'}")
                        rendering.print_log_tail(c, *self.stack.log_tail("webserver"))
                        return
                    time.sleep(0.5)
            self.ui_url = f"http://{host}:{port}"
        c.print(f"[bold green]Dagster UI: {self.ui_url}/assets/course_content[/]  (runs: {self.ui_url}/runs)")
        c.print("The daemon and the UI keep running (enqueue more with `python3 dev.py ignite enqueue …`). "
                "Ctrl-C stops them.")
        while all(p.poll() is None for p in self.stack.procs.values()):
            time.sleep(1)
        dead = [n for n, p in self.stack.procs.items() if p.poll() is not None]
        c.print(f"[red]{', '.join(dead)} exited[/]; see {self.log_dir}")

    def _stop(self) -> None:
        if self.stack is None or not self.stack.procs:
            return
        names = ", ".join(self.stack.procs)
        with self.console.status(f"stopping {names}…"):
            self.stack.stop()
        self.console.print(f"[dim]stopped {names}[/]")
        self.stack = None
