"""Container-job backends behind one interface (:mod:`airflow_ml_provider.backends.base`).

Backend modules import their SDK (docker, requests) lazily inside methods, so importing this
package costs nothing at DAG parse time.
"""
