"""Media: image providers, storing generated images, attaching them into course.json (no Dagster here).

* ``providers`` — the ImageProvider interface, the OpenAI images implementation, the failure policy.
* ``markers``   — ``[IMAGE:…]`` markers, and keeping attached media across a regeneration.
* ``attach``    — CAS attachment into course.json, URL → key, the completeness report (keys: storage.keys).
* ``worker``    — one claimed media job: generate → store → attach → complete, fenced by attempt.
* ``live``      — the synchronous path of the ``ai-generate-media`` route.
* ``reconcile`` — drift correction: media jobs whose stored image is attached are marked done.
"""
