"""Hooks: the only place that reads Airflow Connections."""
