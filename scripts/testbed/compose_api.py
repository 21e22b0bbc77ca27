"""A small client of the compose stack's Airflow 3 REST API (:meth:`scripts.testbed.compose_bed.Stack.api`).

Token login (``/auth/token``, renewed once on 401), DAG runs (trigger, pause, wait, fail the
others: unpausing ``ml_pipeline`` queues a scheduled run), task instances and their logs. No proxy
is used: the stack listens on this machine.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any


class AirflowApiError(RuntimeError):
    """A REST call answered with an error, or a run did not finish in time."""


@dataclass
class AirflowApi:
    """A small client of Airflow 3's REST API (``/auth/token`` then bearer tokens).

    :param base_url: ``http://host:port`` of the api-server.
    :param user: the admin user.
    :param password: its password.
    """

    base_url: str
    user: str
    password: str
    _token: str | None = None

    def request(self, method: str, path: str, body: object | None = None, timeout: float = 30) -> tuple[int, Any]:
        """One call; (status, JSON or text). Logs in first, and again once on 401."""
        for attempt in (1, 2):
            if self._token is None or attempt == 2:
                self._token = self._login()
            headers = {"Accept": "application/json", "Authorization": f"Bearer {self._token}"}
            status, payload = self._call(method, path, body, headers, timeout)
            if status != 401:
                return status, payload
        return status, payload

    def _call(
        self, method: str, path: str, body: object | None, headers: dict[str, str], timeout: float
    ) -> tuple[int, Any]:
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers = {**headers, "Content-Type": "application/json"}
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def _login(self) -> str:
        status, body = self._call(
            "POST", "/auth/token", {"username": self.user, "password": self.password}, {}, timeout=30
        )
        if status not in (200, 201) or not isinstance(body, dict) or "access_token" not in body:
            raise AirflowApiError(f"POST /auth/token: HTTP {status}")
        token: str = body["access_token"]
        return token

    def get(self, path: str) -> Any:
        """GET ``path``; the JSON body. AirflowApiError on a non-2xx answer."""
        return self.call("GET", path)

    def call(self, method: str, path: str, body: object | None = None) -> Any:
        status, payload = self.request(method, path, body)
        if not 200 <= status < 300:
            raise AirflowApiError(f"{method} {path}: HTTP {status}: {str(payload)[:2000]}")
        return payload

    def dag_path(self, dag_id: str, run_id: str | None = None) -> str:
        path = f"/api/v2/dags/{urllib.parse.quote(dag_id, safe='')}"
        return path if run_id is None else f"{path}/dagRuns/{urllib.parse.quote(run_id, safe='')}"

    def wait_for_dag(self, dag_id: str, timeout: float = 300) -> None:
        """Wait until the dag-processor has parsed ``dag_id``; AirflowApiError with the import errors if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, _ = self.request("GET", self.dag_path(dag_id))
            if status == 200:
                return
            time.sleep(2)
        errors = self.get("/api/v2/importErrors").get("import_errors", [])
        raise AirflowApiError(f"DAG {dag_id} not parsed in {timeout:.0f} s; import errors: {errors}")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """A manual run of ``dag_id`` with ``conf``; its run_id."""
        run = self.call("POST", f"{self.dag_path(dag_id)}/dagRuns", {"logical_date": None, "conf": conf})
        run_id: str = run["dag_run_id"]
        return run_id

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.call("PATCH", self.dag_path(dag_id), {"is_paused": paused})

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.get(f"{self.dag_path(dag_id)}/dagRuns?limit=100")["dag_runs"]
        return runs

    def fail_other_runs(self, dag_id: str, keep: str) -> list[str]:
        """Mark every unfinished run of ``dag_id`` but ``keep`` failed (e.g. the scheduled run unpausing made).

        The scheduler may update the same run at that moment (the API then answers 500, "Database
        error"): such a run is left for the next call. Returns the runs marked failed now.
        """
        failed = []
        for run in self.runs(dag_id):
            if run["dag_run_id"] != keep and run["state"] in ("queued", "running"):
                status, body = self.request("PATCH", self.dag_path(dag_id, run["dag_run_id"]), {"state": "failed"})
                if 200 <= status < 300:
                    failed.append(run["dag_run_id"])
                elif status < 500:
                    raise AirflowApiError(f"marking run {run['dag_run_id']} failed: HTTP {status}: {str(body)[:500]}")
        return failed

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        tis: list[dict[str, Any]] = self.get(f"{self.dag_path(dag_id, run_id)}/taskInstances?limit=200")[
            "task_instances"
        ]
        return tis

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float, keep_only: bool = True) -> str:
        """Poll until the run is success or failed; its state. With ``keep_only`` other runs are failed meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            if keep_only:
                self.fail_other_runs(dag_id, run_id)
            state = str(self.get(self.dag_path(dag_id, run_id))["state"])
            if state in ("success", "failed"):
                return state
            if time.monotonic() > deadline:
                states = {t["task_id"] + f"[{t['map_index']}]": t["state"] for t in self.task_instances(dag_id, run_id)}
                raise AirflowApiError(f"run {run_id} still {state} after {timeout:.0f} s; tasks: {states}")
            time.sleep(5)

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The text of one try's log (full content)."""
        path = (
            f"{self.dag_path(dag_id, run_id)}/taskInstances/{urllib.parse.quote(task_id, safe='')}/logs/"
            f"{try_number}?full_content=true&map_index={map_index}"
        )
        status, body = self.request("GET", path, timeout=60)
        if status != 200 or not isinstance(body, dict):
            return f"(no log: HTTP {status})"
        content = body.get("content")
        if isinstance(content, list):
            return "\n".join(
                " ".join(str(x.get(k, "")) for k in ("timestamp", "level", "event")) if isinstance(x, dict) else str(x)
                for x in content
            )
        return str(content)
