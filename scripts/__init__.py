"""Developer scripts of airflow-ml-provider (not shipped in the wheel); see ``scripts/testbed``."""
