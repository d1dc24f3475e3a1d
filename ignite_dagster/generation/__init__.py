"""Course generation. ``stages/`` holds one module per stage, named as the stage (``select_strategy`` →
``build_skeleton`` → ``fill`` → ``validate_normalize`` → ``repair``; persist is ``course_jobs/persist.py``);
``deterministic`` and ``packs`` compile offline packs, ``llm/`` writes through any OpenAI-compatible model
(``ModelWriter``), ``artifacts`` holds the debug files they leave, ``types`` the stages' inputs and outputs.

The course worker (``course_jobs/worker.py``) is the only chain: it calls the stages in the order of
``course_jobs/stages.py``, so tests drive exactly what runs in production.
"""
