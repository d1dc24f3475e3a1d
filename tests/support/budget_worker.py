"""One "worker process" of the shared-budget test: N structured calls through the real client and budget.

    python -m tests.support.budget_worker DB_URL BASE_URL KEY RPM WINDOW CALLS CONCURRENCY [MAX_IN_FLIGHT]

Prints one JSON line: how many calls succeeded and how long this process waited for grants. Run as a
separate OS process so the test proves the budget holds across processes, not just inside one.
"""

from __future__ import annotations

import asyncio
import json
import sys

from pydantic import BaseModel

from ignite_dagster.budget import BudgetLimits, ProviderBudget
from ignite_dagster.generation.llm.client import ProviderConfig, StructuredClient


class Answer(BaseModel):
    value: int


async def main(argv: list[str]) -> dict:
    db_url, base_url, key = argv[0], argv[1], argv[2]
    rpm, window, calls, concurrency = int(argv[3]), float(argv[4]), int(argv[5]), int(argv[6])
    max_in_flight = int(argv[7]) if len(argv) > 7 and argv[7] != "-" else None
    budget = ProviderBudget.for_url(db_url, key, BudgetLimits(rpm=rpm, max_in_flight=max_in_flight),
                                    window_seconds=window, lease_seconds=30)
    config = ProviderConfig(api_key="k", model="test-model", base_url=base_url, timeout_seconds=10.0,
                            max_output_tokens=200, concurrency=concurrency, budget=budget, discover_slots=False)
    # warm up outside the budget (imports, TLS context, first connection): a process's first request
    # leaves long after its grant on a loaded machine, which would blur what the test measures
    warm = ProviderConfig(api_key="k", model="test-model", base_url=base_url, timeout_seconds=10.0,
                          max_output_tokens=200, concurrency=1, discover_slots=False)
    async with StructuredClient(warm) as client:
        await client.parse([{"role": "user", "content": "warmup"}], Answer, meter=client.new_meter(),
                           prompt_version="t", use_cache=False)
    async with StructuredClient(config) as client:
        meter = client.new_meter()
        results = await asyncio.gather(*[
            client.parse([{"role": "user", "content": f"call {n}"}], Answer, meter=meter, prompt_version="t",
                         use_cache=False)
            for n in range(calls)
        ])
    return {"ok": len(results), "waits": budget.waits, "calls": meter.calls}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:]))))
