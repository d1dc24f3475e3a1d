"""Course generation: strategy selection, skeleton, deterministic packs or LLM fill, validation, repair.

Stages live in their own modules (``strategy``, ``skeleton``, ``deterministic``, ``orchestrator``) and
share the types of ``generation.types``. Nothing is imported here on purpose: ``course.normalize`` uses
``generation.types``, and an eager import of the orchestrator from this package would be circular.
"""
