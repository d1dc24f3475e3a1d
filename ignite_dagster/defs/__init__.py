"""The thin Dagster shell: partitions, assets, ops, sensors, schedules and resources over the domain code."""
