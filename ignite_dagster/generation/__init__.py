"""Course generation, one module per stage: ``strategy`` → ``skeleton`` → ``fill`` (``deterministic`` packs
or ``llm``) → ``validate`` → ``repair``, plus the debug ``artifacts`` they leave.

The course worker (``course_jobs/worker.py``) is the only chain: it calls one stage per step, so every
stage shows in Dagster with its own timing and tests drive exactly what runs in production.
"""
