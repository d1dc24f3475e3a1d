"""The schema's SQL, installed as the package ``ignite_dagster.sql``.

The files live in the repository's top-level ``sql/`` so that a reader finds them there (sql/README.md);
setup.py maps this folder to ``ignite_dagster.sql`` so that a built wheel ships them inside the package
and an editable install reads them from here, both through :mod:`importlib.resources`. This file makes
the folder a regular package: setuptools' editable finder does not resolve a namespace package mapped
outside its parent's folder.
"""
