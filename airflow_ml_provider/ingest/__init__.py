"""Copy a table or query from a SQL database into a Parquet dataset (the operator is
:class:`airflow_ml_provider.operators.ingest.SqlIngestOperator`).

* :mod:`.columns` -- result columns as Arrow types, rows to record batches (fast path and clear errors);
* :mod:`.sources` -- reading: one class per database family, server-side cursors, read-only sessions;
* :mod:`.load` -- one run: the columns checked against the arguments, the chunks streamed, the publish;
* :mod:`.parts` -- writing: Hive partition directories, one Parquet writer per partition, bounded buffers;
* :mod:`.state` -- incremental mode: the ``ingest_batch=N`` directories and each one's ``_watermark.json``.

Importing this package imports neither pyarrow nor a database driver.
"""
