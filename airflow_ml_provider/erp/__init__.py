"""Write prediction datasets into an ERP database: replace the rows of some partition keys at once.

* :mod:`.identifiers` -- table and column names, validated before any SQL is built.
* :mod:`.checks` -- what is checked on the dataset (Arrow schema and batches) before writing.
* :mod:`.drop_guard` -- new row counts against the ones being replaced, per key.
* :mod:`.dialect` -- the interface one family of databases implements (:class:`~.dialect.ErpWriter`).
* :mod:`.postgres` -- PostgreSQL: COPY into a staging table, then delete + insert, one transaction.
* :mod:`.mysql` -- MariaDB/MySQL: named locks per key, batched inserts into a TEMPORARY staging
  table, then delete + insert, one transaction.
* :mod:`.sqlite` -- SQLite: ``BEGIN IMMEDIATE``, batched inserts into a TEMP staging table, then
  delete + insert, one transaction.

The operator is :class:`airflow_ml_provider.operators.erp_writer.ErpWriteOperator`.
"""
