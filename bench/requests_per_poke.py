"""NameNode requests per poke for 45 markers under one directory, counted on a real NameNode.

Ours: one HdfsSuccessSensor over the 45 marker paths. Stock: the apache-hdfs provider's
WebHdfsSensor watches one path, so 45 of them (one per marker). A counting proxy in front of
the NameNode counts the HTTP requests of one poke of each.
"""

from __future__ import annotations

import json
import os
from typing import Any

from bench.common import Row
from scripts.testbed.counting_proxy import CountingProxy

N = 45


def run(cluster: Any) -> list[Row]:
    """Prepare 45 markers on ``cluster``, then count one poke of ours and of the stock sensors."""
    from hdfs import InsecureClient

    from airflow_ml_provider.sensors.hdfs import HdfsSuccessSensor

    admin = InsecureClient(cluster.namenode_urls[0], user=cluster.superuser)
    markers = [f"/bench/markers/_SUCCESS_C{i:02d}" for i in range(N)]
    for m in markers:
        admin.write(m, data=b"", overwrite=True)

    with CountingProxy(cluster.namenode_urls[0]) as proxy:
        host, port = proxy.url.removeprefix("http://").split(":")
        os.environ["AIRFLOW_CONN_BENCH_ML"] = json.dumps(
            {"conn_type": "ml_hdfs", "host": f"{host}:{port}", "login": "etl"}
        )
        os.environ["AIRFLOW_CONN_BENCH_STOCK"] = json.dumps(
            {"conn_type": "webhdfs", "host": host, "port": int(port), "login": "etl"}
        )
        ours = HdfsSuccessSensor(task_id="ours", paths=markers, marker=None, hdfs_conn_id="bench_ml")
        proxy.reset()
        assert ours.poke({})
        ours_count = len(proxy.requests)

        from airflow.providers.apache.hdfs.sensors.web_hdfs import WebHdfsSensor

        stock = [
            WebHdfsSensor(task_id=f"s{i}", filepath=m, webhdfs_conn_id="bench_stock") for i, m in enumerate(markers)
        ]
        proxy.reset()
        assert all(s.poke({}) for s in stock)
        stock_count = len(proxy.requests)
        stock_ops = dict(proxy.counts())
    return [
        Row(
            name=f"NameNode requests per poke, {N} markers in one directory",
            ours=ours_count,
            baseline=stock_count,
            unit="req",
            baseline_name=f"{N} x WebHdfsSensor (stock)",
            note=f"counting proxy before a real NameNode; stock ops {stock_ops}",
        )
    ]
