"""Code that runs inside the ML containers, not in Airflow.

The container image ships a copy of this directory as ``airflow_ml_provider.jobs`` next to an
empty ``airflow_ml_provider/__init__.py``, with Python 3.11, numpy, pandas, pyarrow and lightgbm,
but without Airflow and without the rest of this provider. Hence the rules for modules here:

* import only the standard library, numpy, pandas, pyarrow and lightgbm;
* never import an ``airflow_ml_provider`` module outside this package (they are not in the image);
* never import a module of this package from code Airflow loads at DAG parse time (operators,
  hooks, DAG files): the heavy libraries are not on the scheduler, and a DAG refers to a job
  only by its command line, e.g. ``python -m airflow_ml_provider.jobs.markdown_train ...``.
  The one exception is :mod:`airflow_ml_provider.jobs.spark_spec` (with what it imports,
  :mod:`~airflow_ml_provider.jobs.common` and :mod:`~airflow_ml_provider.jobs.spark_params`):
  standard library only, so the Spark operator checks a training spec when the DAG is parsed.

The Spark training application (``spark_*`` modules) runs under ``spark-submit``, which ships this
package as a ``--py-files`` zip (with an empty ``airflow_ml_provider/__init__.py``); it may also
import pyspark and mlflow.

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
* :mod:`airflow_ml_provider.jobs.spark_spec`: the Spark training spec (a JSON object): the frozen
  ``TrainSpec``, ``parse_spec`` (every field checked, unknown keys refused, errors naming the field
  and the fix) and the checks of the input's columns and null counts. Standard library only: the
  module parse-time code (``SparkTrainOperator``) may import.
* :mod:`airflow_ml_provider.jobs.spark_params`: the Spark ML and LightGBM parameter names and value
  types a spec may set (standard library only, used by ``spark_spec``).
* :mod:`airflow_ml_provider.jobs.spark_train`: the spark-submit application
  (``spark_train.py --spec JSON --result PATH``): the SparkSession, reading and checking the Parquet
  dataset, the MLflow run (params, metrics, the model; FAILED on an error), the JSON result and the
  exit code (0, 2 bad input, 1 other failure).
* :mod:`airflow_ml_provider.jobs.spark_ml`: its Spark ML algorithms (linear, GBT, random forest):
  one Pipeline of encoders, VectorAssembler and estimator, a seeded holdout, CrossValidator over
  the grid, the holdout metrics.
* :mod:`airflow_ml_provider.jobs.spark_lightgbm`: ``lightgbm_per_group``: one LightGBM model per
  group trained on the executors (``groupBy(...).applyInPandas``), overall metrics from per-group
  sufficient statistics, and the MLflow pyfunc model dispatching rows to their group's booster
  (self-contained: loading it needs neither this repository nor the training script).
"""
