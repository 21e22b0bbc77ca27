"""Datasets and marker files on local disk or HDFS, behind one contract (see :mod:`.base`).

* :mod:`.paths` -- the one parser of ``hdfs://``, ``file://`` and plain paths;
* :mod:`.base` -- the contract, dataset listing, batch reading, staging and atomic publishing;
* :mod:`.errors` -- which failures are "refused" (permanent) and which "unavailable" (transient);
* :mod:`.local` -- the local disk; :mod:`.webhdfs` -- HDFS through WebHDFS (HdfsCLI).

Importing this package imports neither pyarrow nor hdfs nor requests.
"""
