"""Code that runs inside the ML containers, not in Airflow.

The container image ships a copy of this directory as ``airflow_ml_provider.jobs`` next to an
empty ``airflow_ml_provider/__init__.py``, with Python 3.11, numpy, pandas, pyarrow and lightgbm,
but without Airflow and without the rest of this provider. Hence the rules for modules here:

* import only the standard library, numpy, pandas, pyarrow and lightgbm;
* never import an ``airflow_ml_provider`` module outside this package (they are not in the image);
* never import a module of this package from code Airflow loads at DAG parse time (operators,
  hooks, DAG files): the heavy libraries are not on the scheduler, and a DAG refers to a job
  only by its command line, e.g. ``python -m airflow_ml_provider.jobs.markdown_train ...``.

Modules:

* :mod:`airflow_ml_provider.jobs.common`: the bad-input error and the ``--week`` / ``--countries``
  parsers every job uses.
* :mod:`airflow_ml_provider.jobs.threads`: how many threads a job may use in its container
  (``$ML_NUM_THREADS``, the cgroup CPU limit, the data size).
* :mod:`airflow_ml_provider.jobs.markdown_train`: the weekly markdown-pricing training job
  (one container per group of countries): the command line and the per-country loop.
* :mod:`airflow_ml_provider.jobs.markdown_data`: its files: reading a country's sales, publishing
  predictions (``_SUCCESS`` last) and the JSON result.
* :mod:`airflow_ml_provider.jobs.markdown_model`: its LightGBM model: fit, next week's state,
  the revenue-maximizing markdown.
* :mod:`airflow_ml_provider.jobs.synthetic`: a synthetic weekly sales dataset in the layout the
  training job reads, for tests and demos (the calibrated demand model).
* :mod:`airflow_ml_provider.jobs.synthetic_seed`: the same data as a ``sales`` table in a source
  database. The one exception to the rules above: it runs on the Airflow side (``python -m
  airflow_ml_provider.jobs.synthetic seed``) and imports Airflow and this provider's ERP writer
  inside its functions only, so the image can still import the package; in the image the
  subcommand exits with a clear error.
"""
