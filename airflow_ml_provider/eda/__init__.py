"""Exploratory data analysis and a data-quality gate for Parquet datasets (local disk or HDFS).

The dataset is streamed record batch by record batch and never held in memory as a whole:

* :mod:`.sketches` -- mergeable, bounded-memory summaries (moments, distinct-count sketch, sample,
  top values) and what their accuracy is;
* :mod:`.stats` -- per-column statistics built from those summaries;
* :mod:`.profile` -- reading the footers and batches of a dataset, overall and per Hive partition;
* :mod:`.gate` -- the optional thresholds and their verdict;
* :mod:`.svg` and :mod:`.report` -- the self-contained HTML report with inline SVG charts.

The operator is :class:`airflow_ml_provider.operators.eda.EdaReportOperator`. DAG files import
only :mod:`.gate` (through the operator), which imports neither numpy, pandas nor pyarrow;
:mod:`.sketches`, :mod:`.stats` and :mod:`.profile` import them (the ``mlflow`` extra) and are
imported by the operator's ``execute``.
"""
