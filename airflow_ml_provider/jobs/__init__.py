"""Code that runs inside the ML containers, not in Airflow.

The container image ships a copy of this directory as ``airflow_ml_provider.jobs`` next to an
empty ``airflow_ml_provider/__init__.py``, with Python 3.11, numpy, pandas, pyarrow and lightgbm,
but without Airflow and without the rest of this provider. Hence the rules for modules here:

* import only the standard library, numpy, pandas, pyarrow and lightgbm;
* never import another ``airflow_ml_provider`` module (it is not in the image);
* never import a module of this package from code Airflow loads at DAG parse time (operators,
  hooks, DAG files): the heavy libraries are not on the scheduler, and a DAG refers to a job
  only by its command line, e.g. ``python -m airflow_ml_provider.jobs.markdown_train ...``.

Modules:

* :mod:`airflow_ml_provider.jobs.markdown_train`: the weekly markdown-pricing training job
  (one container per group of countries).
* :mod:`airflow_ml_provider.jobs.synthetic`: a synthetic weekly sales dataset in the layout the
  training job reads, for tests and demos.
"""
