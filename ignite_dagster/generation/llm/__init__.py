"""Skeleton + LLM generation through any OpenAI-compatible server.

Modules: ``client`` (``StructuredClient``: one structured call and its retries, decided by
``queue/retry.py``), ``transport`` (one HTTP attempt), ``slots`` (server slots, output budgets),
``deadline``, ``wire`` (strict schema, ``response_format``), ``meter`` (usage and cost), ``cache``
(content-addressed answer cache in object storage), ``pricing`` (token cost), ``prompts`` (versioned wording),
``schemas`` (structured output shapes and their mapping onto the skeleton), ``writer`` (``ModelWriter``: fill
and repair through the model, the object the fill and repair stages hold as ``deps.llm``), ``item_repair``
(one targeted repair round).
"""

from ignite_dagster.generation.llm.client import PROVIDER_NAME, ProviderConfig, StructuredClient
from ignite_dagster.generation.llm.meter import UsageMeter
from ignite_dagster.generation.llm.prompts import PROMPT_VERSION
from ignite_dagster.generation.llm.writer import LLMFillResult, ModelWriter, PlannedCall

__all__ = [
    "ModelWriter",
    "LLMFillResult",
    "PROMPT_VERSION",
    "PROVIDER_NAME",
    "PlannedCall",
    "ProviderConfig",
    "StructuredClient",
    "UsageMeter",
]
