"""What batch prediction does inside a task: load an MLflow model and score Parquet with it.

* :mod:`.model` -- check a model URI, load the model with the connection's credentials;
* :mod:`.pandas_engine` -- score file by file, chunk by chunk, in this process;
* :mod:`.spark_engine` -- score with ``mlflow.pyfunc.spark_udf`` on a SparkSession.

The operator (:mod:`airflow_ml_provider.operators.batch_predict`) validates its arguments, plans
the columns and publishes the output through :mod:`airflow_ml_provider.storage`. Nothing here is
imported when a DAG file is parsed.
"""
