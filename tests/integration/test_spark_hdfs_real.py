"""What Spark 4's own Hadoop client can do with the test bed's HDFS 2.7.3, in ``local[2]`` and on the
standalone master (executors in their own JVMs).

Findings (pyspark 4.2.0, whose wheel ships ``hadoop-client-api/runtime`` 3.5.0):

* ``hdfs://<namenode>:<rpc port>/…`` (NameNode RPC) works: Parquet written with Spark's default
  committer (``_SUCCESS`` written, ``_temporary`` gone), read back, a Hive-partitioned dataset
  written over WebHDFS (with ``_SUCCESS`` and dot files beside it) read, and the files are owned
  by ``HADOOP_USER_NAME`` of the driver JVM, on the executors too. An HA pair works through a
  logical nameservice with the client settings :mod:`airflow_ml_provider.storage.spark_urls`
  generates, across a failover. Nothing else is needed on this bed (the DataNode registers as
  127.0.0.1, so ``dfs.client.use.datanode.hostname`` stays off). Spark's client does not read the
  cluster's ``hdfs-site.xml``: its files get the client default replication (3), not the bed's 1.
* ``webhdfs://<namenode>:<http port>/…`` never works, whatever the server: the shaded client cannot
  decode any WebHDFS answer (``Response decoding failure: … ClassNotFoundException:
  org.apache.hadoop.shaded.org.glassfish.jersey.internal.RuntimeDelegateImpl``; for a missing path
  ``Unexpected HTTP response: code=404 != 200, op=GETFILESTATUS``). The failure is asserted, so a
  pyspark release that fixes it shows up here.

One SparkSession per master (module-scoped, parametrized: pytest runs all ``local[2]`` tests, then
all standalone ones); the driver JVM starts once with ``HADOOP_USER_NAME=etl``.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from py4j.protocol import Py4JJavaError

from airflow_ml_provider.hooks.webhdfs import HdfsConfig
from airflow_ml_provider.storage.spark_urls import SparkFileSystem, SparkHdfs, merge_settings, spark_filesystem
from scripts.testbed import spark_bed
from tests.integration.conftest import admin_client

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]
USER = "etl"
SHADED_JERSEY = "ClassNotFoundException: org.apache.hadoop.shaded.org.glassfish.jersey.internal.RuntimeDelegateImpl"


def connection(conn_id: str, urls: list[str], rpc_url: str | list[str]) -> tuple[HdfsConfig, SparkHdfs]:
    """An ml_hdfs connection as a DAG author writes it: WebHDFS hosts, user, and the RPC port(s) as an extra."""
    from airflow.sdk import Connection

    rpc = [rpc_url] if isinstance(rpc_url, str) else rpc_url
    ports = ",".join(str(urlsplit(u).port) for u in rpc)
    conn = Connection(
        conn_id=conn_id,
        conn_type="ml_hdfs",
        host=",".join(u.removeprefix("http://") for u in urls),
        login=USER,
        extra=json.dumps({"rpc_port": ports}),
    )
    return HdfsConfig.from_connection(conn), SparkHdfs.from_connection(conn)


def put_parquet(client: Any, path: str, frame: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf)
    client.write(path, data=buf.getvalue(), overwrite=True)


def owned_dir(cluster: Any, root: str = "/t") -> str:
    """A fresh directory owned by the Spark user."""
    path = f"{root}/{uuid.uuid4().hex[:10]}"
    admin = admin_client(cluster)
    admin.makedirs(path, permission="755")
    admin.set_owner(path, owner=USER)
    return path


@pytest.fixture(scope="module")
def filesystems(hdfs: Any, hdfs_ha: Any) -> dict[str, SparkFileSystem]:
    """Spark's view of the single NameNode and of the HA pair, from their connections."""
    single = spark_filesystem(*connection("spark_single", hdfs.namenode_urls, hdfs.rpc_url))
    ha = spark_filesystem(
        *connection("spark_ha", hdfs_ha.namenode_urls, [hdfs_ha.rpc_urls["nn1"], hdfs_ha.rpc_urls["nn2"]])
    )
    return {"single": single, "ha": ha}


def stop_jvm() -> None:
    """Stop PySpark's gateway JVM (it keeps the Hadoop user it started with), while logging still works."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    # another module's session (e.g. MLflow's local[1] for a Spark ML model scored by the pandas engine):
    # SparkSession.stop also clears the class-level session PySpark would otherwise hand out again
    if SparkSession._instantiatedSession is not None:
        SparkSession._instantiatedSession.stop()
    if SparkContext._active_spark_context is not None:
        SparkContext._active_spark_context.stop()
    if SparkContext._gateway is not None:
        SparkContext._gateway.shutdown()
        SparkContext._gateway = None
        SparkContext._jvm = None


@pytest.fixture(scope="module")
def driver_jvm() -> None:
    """A driver JVM of this module's own (it must start with the connections' user): a leftover of
    another module is stopped first. Ours is left to the next module: a gateway shut down under a
    later in-process session (MLflow loading a Spark ML model) fails it with 'Connection refused'."""
    stop_jvm()


@pytest.fixture(scope="module", params=["local[2]", "standalone"])
def spark(request: pytest.FixtureRequest, driver_jvm: None, filesystems: dict[str, SparkFileSystem]) -> Iterator[Any]:
    """One session per master, started with the connections' settings and user."""
    from airflow_ml_provider.scoring.spark_engine import spark_session

    master = "local[2]" if request.param == "local[2]" else request.getfixturevalue("spark_standalone").master_url
    conf, env = merge_settings(*filesystems.values())
    assert env == {"HADOOP_USER_NAME": USER}
    session, created = spark_session(
        master,
        {**conf, "spark.executor.memory": "512m"},
        f"spark-hdfs-{request.param}",
        logging.getLogger(__name__),
        env=env,
    )
    assert created
    yield session
    session.stop()


def test_the_driver_uses_the_hadoop_3_client_as_the_connections_user(
    spark: Any, request: pytest.FixtureRequest
) -> None:
    if spark.sparkContext.master.startswith("spark://"):  # really on the standalone master, executors granted
        cluster = request.getfixturevalue("spark_standalone")
        (app,) = [a for a in spark_bed.applications(cluster.ui_url)["active"] if a["name"] == "spark-hdfs-standalone"]
        assert app["state"] == "RUNNING"
        assert app["cores"] > 0
    else:
        assert spark.sparkContext.master == "local[2]"
    jvm = spark.sparkContext._jvm
    assert str(jvm.org.apache.hadoop.util.VersionInfo.getVersion()).startswith("3.")
    assert str(jvm.org.apache.hadoop.security.UserGroupInformation.getCurrentUser().getShortUserName()) == USER
    assert spark.sparkContext.sparkUser() == USER  # what standalone executors act as (SPARK_USER)


def test_rpc_round_trip_with_the_default_committer(
    spark: Any, hdfs: Any, filesystems: dict[str, SparkFileSystem]
) -> None:
    import pandas as pd

    fs = filesystems["single"]
    base = owned_dir(hdfs)
    admin = admin_client(hdfs)
    # a dataset as our storage layer writes it (WebHDFS), with the files a reader must skip
    for i, country in enumerate(("DE", "FR")):
        put_parquet(
            admin,
            f"{base}/in/country={country}/part-00000.parquet",
            pd.DataFrame({"id": range(i * 100, i * 100 + 100)}),
        )
    admin.write(f"{base}/in/_SUCCESS", data=b"")
    admin.write(f"{base}/in/.part-00000.parquet.crc", data=b"not parquet")

    frame = spark.read.parquet(fs.url(f"{base}/in"))
    assert frame.count() == 200
    assert sorted(r["country"] for r in frame.groupBy("country").count().collect()) == ["DE", "FR"]

    out = f"{base}/out"
    frame.selectExpr("id", "id * 0.5 AS score", "country").repartition(3).write.parquet(fs.url(out))
    listing = dict(admin.list(out, status=True))
    parts = sorted(n for n in listing if n.startswith("part-"))
    assert "_SUCCESS" in listing
    assert sorted(listing) == ["_SUCCESS", *parts]  # no _temporary left
    assert len(parts) == 3
    assert {s["owner"] for s in listing.values()} == {USER}  # executors wrote as the driver's user
    assert {s["replication"] for n, s in listing.items() if n in parts} == {3}  # the client default, not the bed's 1

    back = spark.read.parquet(fs.url(out))
    assert back.count() == 200
    assert back.agg({"score": "sum"}).first()[0] == pytest.approx(sum(range(200)) * 0.5)
    # and what Spark wrote is plain Parquet to the WebHDFS side
    import pyarrow.parquet as pq

    with admin.read(f"{out}/{parts[0]}") as reader:
        assert pq.read_table(io.BytesIO(reader.read())).column_names == ["id", "score", "country"]


def test_webhdfs_scheme_fails_in_sparks_shaded_hadoop_client(spark: Any, hdfs: Any) -> None:
    base = owned_dir(hdfs)
    admin = admin_client(hdfs)
    admin.write(f"{base}/in/_SUCCESS", data=b"")
    web = hdfs.namenode_urls[0].replace("http://", "webhdfs://")

    with pytest.raises(Py4JJavaError, match="Response decoding failure") as read:  # a 200 it cannot decode
        spark.read.parquet(f"{web}{base}/in")
    assert SHADED_JERSEY in str(read.value)

    with pytest.raises(Py4JJavaError, match=r"Unexpected HTTP response: code=404 != 200, op=GETFILESTATUS") as write:
        spark.range(3).write.parquet(f"{web}{base}/out")  # a missing path: the 404 it cannot decode either
    assert SHADED_JERSEY in str(write.value)
    assert sorted(admin.list(base)) == ["in"]


def test_a_directory_the_user_may_not_write_is_refused_naming_the_user(
    spark: Any, hdfs: Any, hdfs_dir: str, filesystems: dict[str, SparkFileSystem]
) -> None:
    # hdfs_dir belongs to the superuser (mode 755): etl may read it, not write into it
    with pytest.raises(Py4JJavaError, match=f"Permission denied: user={USER}, access=WRITE") as e:
        spark.range(3).write.parquet(filesystems["single"].url(f"{hdfs_dir}/out"))
    assert "org.apache.hadoop.security.AccessControlException" in str(e.value)
    assert admin_client(hdfs).list(hdfs_dir) == []


def test_ha_nameservice_from_the_connection_survives_a_failover(
    spark: Any, hdfs_ha: Any, filesystems: dict[str, SparkFileSystem]
) -> None:
    fs = filesystems["ha"]
    assert fs.root == "hdfs://spark-ha"  # our name, not the bed's own 'ns1': nothing comes from its config files
    base = owned_dir(hdfs_ha, "/ha")
    spark.range(50).write.parquet(fs.url(f"{base}/before"))
    active = hdfs_ha.active()
    standby = "nn2" if active == "nn1" else "nn1"
    hdfs_ha.failover(active, standby)
    assert hdfs_ha.active() == standby
    assert spark.read.parquet(fs.url(f"{base}/before")).count() == 50
    spark.range(7).write.parquet(fs.url(f"{base}/after"))
    assert spark.read.parquet(fs.url(f"{base}/after")).count() == 7
    assert sorted(admin_client(hdfs_ha).list(f"{base}/after"))[0] == "_SUCCESS"
