"""Attachment benchmark: N concurrent media attachments into one course.json, by N OS processes.

Each process stores its own image (a real PNG) under ``media-library/courses/<id>/items/<itemId>/`` and
attaches its URL into the same ``courses/<id>/course.json`` through ``media.attach.attach_to_course`` —
the compare-and-swap loop the media worker uses. All processes are started, imported and connected
first, then released together by one event, so every attachment is in flight at once (the worst case:
one writer wins each round, everyone else re-reads and re-applies).

Printed from one run: wall time from release to the last attachment, attachments/s, CAS conflicts
retried (total, max for one attachment, distribution), attachments that failed, and the number lost
(URLs not in the final document; the target is zero), checked against the store afterwards.
Target on this machine: 50 concurrent attachments, zero lost, under 10 s.

Run: ``.venv/bin/python bench/attach_bench.py [-n 50] [--backend local|s3] [--repeat 3]``.
(``--backend s3`` serves moto on loopback, one request at a time, as the tests do.)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

COURSE = "attach-bench"


def targets_for(doc: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """n distinct targets: item stimuli, then option media, then appended study-text images."""
    out: list[dict[str, Any]] = [{"type": "item_stimulus", "itemId": it["id"]} for it in doc["items"]]
    for it in doc["items"]:
        out += [{"type": "item_option", "itemId": it["id"], "optionIndex": k} for k in range(len(it.get("options") or []))]
    k = 1
    while len(out) < n:
        out += [{"type": "study_text", "sectionId": t["id"], "markerIndex": k} for t in doc["studyTexts"]]
        k += 1
    return out[:n]


def attacher(store_spec: dict[str, Any], target: dict[str, Any], start: Any, out: Any) -> None:
    """One process, one attachment: upload a PNG, CAS-attach its URL, report timing and conflicts."""
    from ignite_dagster.media.attach import attach_to_course
    from ignite_dagster.storage.keys import media_key
    from tests.support.media import local_or_s3_store
    from tests.support.openai_server import tiny_png

    store = local_or_s3_store(store_spec)
    data = tiny_png(4, 4)
    out.put(("ready", None))
    start.wait(120)
    t0 = time.monotonic()
    try:
        key = media_key(COURSE, target, uuid.uuid4(), "png")
        store.put(key, data, content_type="image/png")
        url = store.public_url(key)
        res = attach_to_course(store, COURSE, target, url, alt="bench")
        out.put(("done", {"url": url, "conflicts": res.conflicts, "seconds": time.monotonic() - t0,
                          "finished": time.time()}))
    except Exception as exc:  # noqa: BLE001 - reported, counted as failed
        out.put(("failed", {"error": f"{type(exc).__name__}: {exc}", "target": target}))


def run_once(n: int, store_spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    from ignite_dagster.course_jobs.persist import write_course_json
    from ignite_dagster.media.attach import attached_urls
    from ignite_dagster.storage.keys import course_path
    from tests.support.media import local_or_s3_store, water_cycle_course

    store = local_or_s3_store(store_spec)
    doc = water_cycle_course(COURSE)
    store.delete(course_path(COURSE))
    write_course_json(store, doc)
    targets = targets_for(doc, n)
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=attacher, args=(store_spec, t, start, out)) for t in targets]
    for p in procs:
        p.start()
    for _ in procs:
        kind, _ = out.get(timeout=120)
        assert kind == "ready"
    released = time.time()
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    done = [r for kind, r in results if kind == "done"]
    failed = [r for kind, r in results if kind == "failed"]
    wall = max(r["finished"] for r in done) - released if done else float("nan")
    final = json.loads(store.get(course_path(COURSE)).data)
    present = {url for _, url in attached_urls(final)}
    lost = [r["url"] for r in done if r["url"] not in present]
    conflicts = [r["conflicts"] for r in done]
    return {
        "n": n, "wall_s": wall, "per_s": len(done) / wall if done else 0.0, "done": len(done), "failed": failed,
        "lost": len(lost), "conflicts_total": sum(conflicts), "conflicts_max": max(conflicts, default=0),
        "conflicts_median": statistics.median(conflicts) if conflicts else 0,
        "latency_median_s": statistics.median(r["seconds"] for r in done) if done else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=50, help="concurrent attachments (one process each)")
    parser.add_argument("--backend", choices=["local", "s3"], default="local")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    # Processes forked from a fork server that imported the code once: N processes start in well under
    # a second instead of paying the imports N times. They are released together only once all are ready.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["ignite_dagster.media.attach", "tests.support.media", "tests.support.openai_server",
                                "boto3", "botocore.session"])
    moto = None
    with tempfile.TemporaryDirectory(prefix="attach-bench-") as tmp:
        if args.backend == "local":
            spec: dict[str, Any] = {"kind": "local", "root": str(Path(tmp) / "storage")}
        else:
            import logging

            from ignite_dagster.storage import S3ObjectStore
            from tests.support.moto_s3 import SerializedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            moto = SerializedMotoServer()
            moto.start()
            S3ObjectStore(moto.endpoint, "us-east-1", "test-access-key", "test-secret-key", bucket_prefix="bench-").ensure_buckets()
            spec = {"kind": "s3", "endpoint": moto.endpoint, "bucket_prefix": "bench-"}
        print(f"attach bench: {args.n} concurrent attachments into one course.json, backend {args.backend}, "
              f"{args.repeat} run(s)")
        print(f"{'run':>3} {'wall s':>7} {'att/s':>7} {'done':>5} {'failed':>6} {'lost':>5} {'conflicts':>9} "
              f"{'max/att':>7} {'median/att':>10} {'median latency s':>16}")
        rows = []
        for i in range(args.repeat):
            r = run_once(args.n, spec, ctx)
            rows.append(r)
            print(f"{i + 1:>3} {r['wall_s']:>7.2f} {r['per_s']:>7.1f} {r['done']:>5} {len(r['failed']):>6} {r['lost']:>5} "
                  f"{r['conflicts_total']:>9} {r['conflicts_max']:>7} {r['conflicts_median']:>10} "
                  f"{r['latency_median_s']:>16.2f}")
            for f in r["failed"][:5]:
                print(f"    failed: {f['target']}: {f['error']}")
        if moto is not None:
            moto.stop()
    worst = max(r["wall_s"] for r in rows)
    ok = all(r["lost"] == 0 and not r["failed"] for r in rows) and worst < 10
    print(f"target ({args.n} concurrent, zero lost, < 10 s): {'met' if ok else 'NOT met'} "
          f"(worst wall {worst:.2f} s, lost {sum(r['lost'] for r in rows)}, failed {sum(len(r['failed']) for r in rows)})")


if __name__ == "__main__":
    main()
