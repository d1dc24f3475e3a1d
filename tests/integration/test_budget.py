"""The shared provider budget (ignite_dagster.budget, sql/007) against a real Postgres and a real
loopback OpenAI-compatible server: limits hold across OS processes, a 429 pauses every caller, token
reservations are corrected by reported usage, and a dead process's lease expires."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from pydantic import BaseModel

from ignite_dagster.budget import BudgetLimits, ProviderBudget, budget_key, estimate_tokens
from ignite_dagster.budget.rate_limit import close_shared_pools, shared_pool
from ignite_dagster.generation.llm.client import ProviderConfig, StructuredClient
from tests.support.openai_server import CHAT, OpenAICompatServer, chat_json, rate_limited

ROOT = Path(__file__).resolve().parents[2]  # tests/<kind>/this file


class Answer(BaseModel):
    value: int


@pytest.fixture(autouse=True)
def _close_budget_pools():
    """Budget pools hold connections to the test's database; close them so it can be dropped."""
    yield
    close_shared_pools()


def max_in_any_window(times: list[float], window: float) -> int:
    """The most arrivals inside any window of ``window`` seconds (each window ending at an arrival)."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window + 1e-9 and j < i:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_two_worker_processes_never_exceed_the_shared_request_limit(db_url):
    limit, window = 5, 1.0
    with OpenAICompatServer(latency=0.05) as server:
        server.respond_with(CHAT, chat_json({"value": 1}))
        key = budget_key("text", server.base_url, "test-model")
        args = [db_url, server.base_url, key, str(limit), str(window + 0.3), "10", "4"]
        t0 = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-m", "tests.support.budget_worker", *args], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=60) for p in procs]
        wall = time.monotonic() - t0
        arrivals = [r.received_at for r in server.requests_to(CHAT) if "warmup" not in r.text()]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert [r["ok"] for r in results] == [10, 10]
    assert len(arrivals) == 20
    # the limit held at the provider: never more than `limit` requests in any window of `window` seconds
    assert max_in_any_window(arrivals, window) <= limit
    # and it was binding: 20 requests at 5 per 1.3 s take at least three full windows
    assert max(arrivals) - min(arrivals) >= 3 * (window + 0.3)
    assert all(r["waits"] > 0 for r in results), "both processes waited for the shared budget"
    assert wall < 30


def test_in_flight_limit_holds_across_clients(db_url):
    latency = 0.2
    with OpenAICompatServer(latency=latency) as server:
        server.respond_with(CHAT, chat_json({"value": 1}))
        key = budget_key("text", server.base_url, "test-model")
        budget = ProviderBudget.for_url(db_url, key, BudgetLimits(max_in_flight=2), lease_seconds=30)

        async def run() -> None:
            configs = [ProviderConfig(api_key="k", model="test-model", base_url=server.base_url, concurrency=8,
                                      budget=budget, discover_slots=False) for _ in range(2)]
            async with StructuredClient(configs[0]) as a, StructuredClient(configs[1]) as b:
                await asyncio.gather(*[
                    c.parse([{"role": "user", "content": f"{n}"}], Answer, meter=c.new_meter(), prompt_version="t",
                            use_cache=False)
                    for n in range(6) for c in (a, b)
                ])

        asyncio.run(run())
        starts = sorted(r.received_at for r in server.requests_to(CHAT))
    assert len(starts) == 12
    # a grant is released only after its answer arrived (>= latency after the request), so at most two
    # of the intervals [arrival, arrival + latency) overlap at any instant
    assert max(sum(1 for s in starts if s <= t < s + latency) for t in starts) <= 2


def test_a_429_with_retry_after_pauses_every_caller_of_the_budget(db_url):
    with OpenAICompatServer() as server:
        server.enqueue(CHAT, rate_limited(retry_after=1))
        server.respond_with(CHAT, chat_json({"value": 1}))
        key = budget_key("text", server.base_url, "test-model")
        budget = ProviderBudget.for_url(db_url, key, BudgetLimits(rpm=1000), lease_seconds=30)

        async def run() -> None:
            config = ProviderConfig(api_key="k", model="test-model", base_url=server.base_url, concurrency=1,
                                    budget=budget, discover_slots=False)
            other = ProviderConfig(api_key="k", model="test-model", base_url=server.base_url, concurrency=4,
                                   budget=budget, discover_slots=False)
            async with StructuredClient(config) as first, StructuredClient(other) as second:
                hit = asyncio.create_task(first.parse([{"role": "user", "content": "first"}], Answer,
                                                      meter=first.new_meter(), prompt_version="t", use_cache=False))
                while not server.requests_to(CHAT):
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.1)  # the 429 has been answered and the pause written
                await asyncio.gather(hit, *[
                    second.parse([{"role": "user", "content": f"other {n}"}], Answer, meter=second.new_meter(),
                                 prompt_version="t", use_cache=False) for n in range(3)])

        asyncio.run(run())
        requests = server.requests_to(CHAT)
    assert len(requests) == 5  # the 429, its retry, three calls of the other client
    limited_at = requests[0].received_at
    assert all(r.received_at >= limited_at + 0.95 for r in requests[1:]), \
        [round(r.received_at - limited_at, 3) for r in requests[1:]]


def test_reservations_are_corrected_to_the_reported_usage(db_url):
    with OpenAICompatServer() as server:
        server.respond_with(CHAT, chat_json({"value": 1}, prompt_tokens=30, completion_tokens=12))
        key = budget_key("text", server.base_url, "test-model")
        budget = ProviderBudget.for_url(db_url, key, BudgetLimits(tpm=100_000), lease_seconds=30)

        async def run() -> None:
            config = ProviderConfig(api_key="k", model="test-model", base_url=server.base_url, max_output_tokens=900,
                                    budget=budget, discover_slots=False)
            async with StructuredClient(config) as client:
                await client.parse([{"role": "user", "content": "x"}], Answer, meter=client.new_meter(),
                                   prompt_version="t", use_cache=False)

        asyncio.run(run())
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT tokens, released_at IS NOT NULL FROM provider_budget_grants").fetchall()
    assert rows == [(42, True)]


def test_tokens_per_minute_wait_for_a_correction_and_a_dead_lease_expires(db_url):
    key = "text:test|tpm"
    budget = ProviderBudget(key, BudgetLimits(tpm=1500, max_in_flight=1), shared_pool(db_url).connection,
                            lease_seconds=0.5)
    first, wait = budget.try_acquire(1000)
    assert first is not None and wait == 0
    # in flight: neither the in-flight cap nor the token window has room
    assert budget.try_acquire(1000)[0] is None
    # the process "dies" (never releases): its lease expires and frees the in-flight slot, but its
    # reservation stays in the window (the tokens may have been billed)
    time.sleep(0.6)
    grant, wait = budget.try_acquire(400)
    assert grant is not None
    assert budget.try_acquire(400)[0] is None  # in flight again (cap 1)
    budget.release(grant, 50)
    # 1000 (expired, still counted) + 50 reported: 400 more fits, 1000 more does not
    assert budget.try_acquire(1000)[0] is None
    assert budget.try_acquire(400)[0] is not None


def test_estimate_is_an_upper_bound_of_prompt_plus_output():
    messages = [{"role": "user", "content": "x" * 400}]
    assert estimate_tokens(1000, messages) >= 1000 + 100


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="rpm"):
        BudgetLimits(rpm=0)


def test_image_requests_share_their_budget_and_a_429_pauses_it(db_url):
    from ignite_dagster.media.image_providers import MediaProviderError, OpenAIImageProvider
    from tests.support.openai_server import IMAGES

    with OpenAICompatServer() as server:
        server.enqueue(IMAGES, rate_limited(retry_after=1))
        provider = OpenAIImageProvider(api_key="k", model="image-model", base_url=server.base_url)
        provider.budget = ProviderBudget.for_url(db_url, budget_key("image", server.base_url, "image-model"),
                                                 BudgetLimits(rpm=100), lease_seconds=30)
        with pytest.raises(MediaProviderError) as info:
            provider.generate("a red square")
        assert info.value.reason_code == "provider_rate_limited"
        provider.generate("a red square")  # waits out the pause the 429 set, then succeeds
        limited, ok = server.requests_to(IMAGES)
        provider.close()
    assert ok.received_at - limited.received_at >= 0.95
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM provider_budget_grants WHERE released_at IS NOT NULL").fetchone()[0] == 2
