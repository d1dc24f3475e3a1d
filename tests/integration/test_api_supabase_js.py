"""The official ``@supabase/supabase-js`` client against our API: ``functions.invoke`` as the original
system's frontend uses it (a string body and an object body for enqueue-job, GET get-course-job and
list-course-jobs), with the agent headers next to the anon key, and the CORS preflight a browser would
send for those requests (``x-region`` from the client's ``region`` option included).

The client is installed once from npm, pinned, into ``~/.cache/ignite-npm/supabase-js`` (or
``IGNITE_NPM_CACHE``) and run by Node on this machine. Node or npm missing: skipped with the reason,
unless ``IGNITE_REQUIRE_NODE=1`` (CI, .ci/run), where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.api_server import AGENT_TOKEN, api_settings, build_world, running_api

SUPABASE_JS_VERSION = "2.75.1"  # the version the original frontend's package-lock.json pins
CACHE = Path(os.environ.get("IGNITE_NPM_CACHE", Path.home() / ".cache" / "ignite-npm")) / "supabase-js"
ORIGIN = "http://localhost:8080"


def _require_node() -> tuple[str, Path]:
    node, npm = shutil.which("node"), shutil.which("npm")
    problem = None if node and npm else f"{'node' if not node else 'npm'} not found on PATH"
    if problem is None:
        package = CACHE / "node_modules" / "@supabase" / "supabase-js" / "package.json"
        installed = json.loads(package.read_text())["version"] if package.exists() else None
        if installed != SUPABASE_JS_VERSION:
            CACHE.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(
                [npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "--no-save",
                 f"@supabase/supabase-js@{SUPABASE_JS_VERSION}"], capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                problem = f"npm install @supabase/supabase-js@{SUPABASE_JS_VERSION} failed: {done.stderr[-500:]}"
    if problem is None:
        return node, CACHE / "node_modules"  # type: ignore[return-value]
    if os.environ.get("IGNITE_REQUIRE_NODE") == "1":
        pytest.fail(f"IGNITE_REQUIRE_NODE=1 but {problem}")
    pytest.skip(problem)


# Runs in Node. Every request the client makes goes through a recording fetch, so the preflight below is
# built from the headers supabase-js really sends, as a browser would build it.
SCRIPT = textwrap.dedent("""
    const { createClient } = require("@supabase/supabase-js");
    const { base, anonKey, agentToken, orgId, userId, origin, courseId } = JSON.parse(process.env.COMPAT_INPUT);
    const sent = [];
    const recordingFetch = (url, init = {}) => {
      const headers = new Headers(init.headers || {});
      sent.push({ url: String(url), method: init.method || "GET", headers: Object.fromEntries(headers.entries()) });
      return fetch(url, init);
    };
    const supabase = createClient(base, anonKey, { global: { fetch: recordingFetch } });
    const agent = { "x-agent-token": agentToken, "x-organization-id": orgId, "x-user-id": userId };
    const payload = { course_id: courseId, subject: "Addition", grade: "3-5", grade_band: "3-5",
                      items_per_group: 12, mode: "options" };
    async function invoke(name, options) {
      const { data, error } = await supabase.functions.invoke(name, options);
      let status = null, body = null;
      if (error && error.context && typeof error.context.status === "number") {
        status = error.context.status;
        body = await error.context.json().catch(() => null);
      }
      return { data, error: error ? { name: error.name, message: error.message, status, body } : null };
    }
    (async () => {
      const out = {};
      out.enqueueString = await invoke("enqueue-job", {
        body: JSON.stringify({ jobType: "ai_course_generate", payload }), headers: agent });
      out.enqueueObject = await invoke("enqueue-job", {
        body: { jobType: "ai_course_generate", payload: { ...payload, course_id: courseId + "-b" } },
        headers: { ...agent, "Idempotency-Key": "supabase-js-object" }, region: "eu-west-1" });
      const jobId = out.enqueueString.data && out.enqueueString.data.jobId;
      out.getCourseJob = await invoke(`get-course-job?id=${jobId}&includeEvents=true`, { method: "GET", headers: agent });
      out.listCourseJobs = await invoke("list-course-jobs?status=pending&limit=5", { method: "GET", headers: agent });
      out.listCourseJobsPost = await invoke("list-course-jobs", { body: { limit: 1 }, headers: agent });
      out.refused = await invoke("enqueue-job", {
        body: { jobType: "ai_course_generate", payload: { ...payload, grade: "College", grade_band: "College" } },
        headers: agent });
      // the preflight a browser sends before the region-pinned invoke above: its non-safelisted headers
      const regional = sent[1];
      const asked = Object.keys(regional.headers).filter(h => !["accept", "accept-language", "content-language"].includes(h));
      const pre = await fetch(regional.url, { method: "OPTIONS", headers: {
        Origin: origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": asked.join(", ") } });
      out.preflight = { status: pre.status, asked, allowOrigin: pre.headers.get("access-control-allow-origin"),
                        allowHeaders: pre.headers.get("access-control-allow-headers"),
                        allowMethods: pre.headers.get("access-control-allow-methods") };
      out.sent = sent;
      console.log(JSON.stringify(out));
    })().catch(e => { console.error(e); process.exit(1); });
""")


def test_supabase_js_functions_invoke_against_the_api(db_url, tmp_path):
    node, modules = _require_node()
    w = build_world(db_url, tmp_path / "storage")
    anon_key = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2lnbmVkLWJ5LWFub3RoZXItcHJvamVjdA"
    with running_api(api_settings(), db_url, w.store, cors_origins=[ORIGIN]) as server:
        script = tmp_path / "invoke.cjs"
        script.write_text(SCRIPT)
        inputs = {"base": server.url, "anonKey": anon_key, "agentToken": AGENT_TOKEN, "orgId": str(w.org_a),
                  "userId": str(uuid.uuid4()), "origin": ORIGIN, "courseId": "supabase-js-course"}
        done = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "NODE_PATH": str(modules), "COMPAT_INPUT": json.dumps(inputs)})
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout.strip().splitlines()[-1])

        # a string body goes out as text/plain, an object as application/json: both are read as JSON
        content_types = [s["headers"].get("content-type", "") for s in out["sent"][:2]]
        assert content_types[0].startswith("text/plain") and content_types[1].startswith("application/json")
        for name in ("enqueueString", "enqueueObject"):
            assert out[name]["error"] is None, out[name]
            assert out[name]["data"]["ok"] is True and out[name]["data"]["status"] == "queued"
        assert out["sent"][1]["headers"]["x-region"] == "eu-west-1"
        assert out["sent"][0]["headers"]["authorization"] == f"Bearer {anon_key}"
        assert out["sent"][0]["headers"]["apikey"] == anon_key

        job_id = out["enqueueString"]["data"]["jobId"]
        got = out["getCourseJob"]
        assert got["error"] is None, got
        assert got["data"]["job"]["id"] == job_id and got["data"]["job"]["grade_band"] == "3-5"
        assert isinstance(got["data"]["events"], list)
        listed = out["listCourseJobs"]["data"]
        assert {j["id"] for j in listed["jobs"]} == {job_id, out["enqueueObject"]["data"]["jobId"]}
        assert listed["total"] == 2 and listed["limit"] == 5
        assert len(out["listCourseJobsPost"]["data"]["jobs"]) == 1

        # a refusal reaches supabase-js as a FunctionsHttpError whose body names the field
        refused = out["refused"]["error"]
        assert refused["name"] == "FunctionsHttpError" and refused["status"] == 422
        assert "grade" in refused["body"]["message"] and refused["body"]["error"]["code"] == "invalid_request"

        pre = out["preflight"]
        assert "x-region" in pre["asked"] and "x-agent-token" in pre["asked"]
        assert pre["status"] == 200 and pre["allowOrigin"] == ORIGIN
        allowed = {h.strip() for h in pre["allowHeaders"].split(",")}
        assert set(pre["asked"]) <= allowed, (pre["asked"], allowed)

        # what the client wrote is what the queue holds
        with httpx.Client(base_url=server.url) as http:
            r = http.get("/functions/v1/job-status", params={"jobId": job_id},
                         headers={"x-agent-token": AGENT_TOKEN, "x-organization-id": str(w.org_a)})
            assert r.json()["job"]["courseId"] == "supabase-js-course"
