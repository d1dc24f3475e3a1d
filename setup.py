"""Package discovery, kept here because pyproject.toml cannot say it.

Every package under ``ignite_dagster/`` is found as before, plus ``ignite_dagster.sql``, which is the
repository's top-level ``sql/`` folder (the migrations, sql/README.md): setuptools' ``packages.find`` in
pyproject.toml cannot be combined with a package mapped to another folder, and an explicit package list
there would have to name every new subpackage. Everything else stays in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["ignite_dagster*"]), "ignite_dagster.sql"],
    package_dir={"ignite_dagster.sql": "sql"},
)
