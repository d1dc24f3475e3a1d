"""Media: image providers, storing generated images, attaching them into course.json (no Dagster here).

* ``providers`` — the ImageProvider interface, the OpenAI images implementation, the failure policy.
* ``attach``    — object keys, CAS attachment into course.json, URL → key, the completeness report.
* ``worker``    — one claimed media job: generate → store → attach → complete, fenced by attempt.
* ``live``      — the synchronous path of the ``ai-generate-media`` route.
"""
