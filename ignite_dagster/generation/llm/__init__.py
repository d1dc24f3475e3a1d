"""Skeleton + LLM generation through any OpenAI-compatible server.

Modules: ``provider`` (client, retry layer, usage metering), ``cache`` (content-addressed answer cache in
object storage), ``pricing`` (token cost), ``prompts`` (versioned wording), ``schemas`` (structured
output shapes and their mapping onto the skeleton), ``filler`` (``LLMFiller``: fill and repair, the
object the fill and repair stages hold as ``deps.llm``), ``repairer`` (one targeted repair round).
"""

from ignite_dagster.generation.llm.filler import LLMFiller, LLMFillResult, PlannedCall
from ignite_dagster.generation.llm.prompts import PROMPT_VERSION
from ignite_dagster.generation.llm.provider import PROVIDER_NAME, ProviderConfig, StructuredClient, UsageMeter

__all__ = [
    "LLMFiller",
    "LLMFillResult",
    "PROMPT_VERSION",
    "PROVIDER_NAME",
    "PlannedCall",
    "ProviderConfig",
    "StructuredClient",
    "UsageMeter",
]
