"""Failure alerts from a real Airflow (scheduler, LocalExecutor, task runner) to a real SMTP server
(aiosmtpd, with AUTH) and a real HTTP listener on 127.0.0.1.

One bed for the module; three DAGs run at once: ``n_fail`` fails with a drop-guard error carrying the
keys DE and FR and alerts by e-mail and webhook; ``n_flaky`` alerts a webhook that answers 500 twice
before 200 (retried, delivered once); ``n_down`` alerts an unreachable webhook first and a working one
second (logged, the task is still ``failed``, the second alert still goes out).
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from scripts.testbed.loopback_http import LoopbackHttpServer, QuietHandler, free_port
from scripts.testbed.smtp_bed import SmtpBed
from tests.integration.conftest import running_airflow

pytestmark = [
    pytest.mark.integration,
    # the SMTP bed requires AUTH over plain text on purpose (loopback only); aiosmtpd warns on each connection
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

TOKEN = "whk-" + uuid.uuid4().hex  # the webhook's bearer token: in the header only, nowhere else
SMTP_PASSWORD = "smtp-" + uuid.uuid4().hex
RECIPIENT = "ml-oncall@example.com"

DAGS = textwrap.dedent(
    """
    import datetime as dt
    from airflow.sdk import DAG, task
    from airflow_ml_provider.notifications.smtp import smtp_failure_notifier
    from airflow_ml_provider.notifications.webhook import WebhookNotifier

    class DropGuardError(RuntimeError):
        def __init__(self, message, keys):
            super().__init__(message)
            self.keys = keys

    def make(dag_id, callbacks):
        with DAG(dag_id, schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False):
            @task(task_id="write_erp", retries=0, on_failure_callback=callbacks)
            def write_erp():
                message = "Prediction count dropped more than 10% for 2 countries\\nDE: 1000 -> 850"
                raise DropGuardError(message, ["DE", "FR"])
            write_erp()

    MAIL = smtp_failure_notifier(to={to!r}, smtp_conn_id="smtp_alerts")
    make("n_fail", [MAIL, WebhookNotifier(conn_id="ml_webhook_alerts")])
    make("n_flaky", [WebhookNotifier(conn_id="ml_webhook_flaky")])
    make("n_down", [WebhookNotifier(conn_id="ml_webhook_down"), WebhookNotifier(conn_id="ml_webhook_alerts")])
    """
).format(to=RECIPIENT)


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: Any
    status: int


class Listener:
    """Records every POST; ``/flaky`` answers 500 twice, then 200."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.cond = threading.Condition()
        self.flaky_answers = [500, 500]
        listener = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                path = urllib.parse.urlsplit(self.path).path
                with listener.cond:
                    status = listener.flaky_answers.pop(0) if path == "/flaky" and listener.flaky_answers else 200
                    listener.posts.append(Post(path, dict(self.headers.items()), json.loads(raw), status))
                    listener.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = LoopbackHttpServer(Handler, name="webhook-listener", poll_interval=0.1)

    def wait(self, predicate: Any, count: int, timeout: float = 60) -> list[Post]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [p for p in self.posts if predicate(p)]
                if len(found) >= count or time.monotonic() > deadline:
                    return found
                self.cond.wait(0.5)


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[SmtpBed, Listener]]:
    listener = Listener()
    listener.server.start()
    with SmtpBed(login="airflow", password=SMTP_PASSWORD) as smtp:
        yield smtp, listener
    listener.server.stop()


@pytest.fixture(scope="module")
def bed(services: tuple[SmtpBed, Listener]) -> Iterator[Any]:
    smtp, listener = services

    def webhook(path: str, **extra: Any) -> str:
        return json.dumps(
            {
                "conn_type": "ml_webhook",
                "host": f"{listener.server.url}{path}",
                "password": TOKEN,
                "extra": {"timeout": 5, "backoff": 0.1, **extra},
            }
        )

    env = {
        "AIRFLOW_CONN_SMTP_ALERTS": json.dumps(smtp.connection(from_email="airflow@example.com")),
        "AIRFLOW_CONN_ML_WEBHOOK_ALERTS": webhook("/alerts"),
        "AIRFLOW_CONN_ML_WEBHOOK_FLAKY": webhook("/flaky", retries=3),
        "AIRFLOW_CONN_ML_WEBHOOK_DOWN": json.dumps(
            {
                "conn_type": "ml_webhook",
                "host": f"http://127.0.0.1:{free_port()}/gone",
                "password": TOKEN,
                "extra": {"timeout": 2, "retries": 1, "backoff": 0.1},
            }
        ),
    }
    with running_airflow("notifications", {"notify_dags.py": DAGS}, env=env) as airflow:
        runs = {}
        for dag_id in ("n_fail", "n_flaky", "n_down"):
            airflow.wait_for_dag(dag_id)
            runs[dag_id] = airflow.trigger(dag_id)
        for dag_id, run_id in runs.items():
            assert airflow.wait_for_run(dag_id, run_id, timeout=90) == "failed"
            assert airflow.task_state(dag_id, run_id, "write_erp") == "failed"
        airflow.runs = runs
        yield airflow


def log_url(airflow: Any, dag_id: str) -> str:
    run_id = urllib.parse.quote(airflow.runs[dag_id])
    return f"{airflow.base_url}/dags/{dag_id}/runs/{run_id}/tasks/write_erp?try_number=1"


def test_a_failed_task_alerts_by_mail_and_webhook_naming_dag_task_run_keys_and_log_url(
    bed: Any, services: tuple[SmtpBed, Listener]
) -> None:
    smtp, listener = services
    run_id = bed.runs["n_fail"]
    url = log_url(bed, "n_fail")

    mails = smtp.wait_for(1, timeout=60)
    time.sleep(1)  # a second mail would be a bug: give it the chance to arrive
    assert len(smtp.messages) == 1, [m.subject for m in smtp.messages]
    mail = mails[0]
    assert mail.login == "airflow"  # the smtp provider logged in with the connection's credentials
    assert mail.rcpt_tos == (RECIPIENT,)
    assert "n_fail" in mail.subject
    assert "write_erp" in mail.subject
    assert run_id in mail.subject
    assert "DE, FR" in mail.subject
    body = mail.body_text()
    for expected in ("n_fail", "write_erp", run_id, "DE, FR", url, "DropGuardError: Prediction count dropped"):
        assert expected in body, expected
    assert SMTP_PASSWORD not in mail.raw.decode(errors="replace")
    assert TOKEN not in mail.raw.decode(errors="replace")

    posts = listener.wait(lambda p: p.path == "/alerts" and p.body["dag_id"] == "n_fail", 1)
    assert len(posts) == 1
    post = posts[0]
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post.headers["Content-Type"] == "application/json"
    assert post.body["task_id"] == "write_erp"
    assert post.body["run_id"] == run_id
    assert post.body["failing_keys"] == ["DE", "FR"]
    assert post.body["log_url"] == url
    assert post.body["try_number"] == 1
    assert post.body["error"].startswith("DropGuardError: Prediction count dropped more than 10%")
    assert TOKEN not in json.dumps(post.body)
    assert SMTP_PASSWORD not in json.dumps(post.body)

    log = bed.task_log("n_fail", run_id, "write_erp")
    assert TOKEN not in log
    assert SMTP_PASSWORD not in log
    assert "Failure alert posted" in log
    assert "Failure alert e-mailed" in log


def test_a_webhook_answering_500_twice_gets_the_alert_delivered_once(
    bed: Any, services: tuple[SmtpBed, Listener]
) -> None:
    _, listener = services
    posts = listener.wait(lambda p: p.path == "/flaky" and p.status == 200, 1)
    all_flaky = [p for p in listener.posts if p.path == "/flaky"]
    assert [p.status for p in all_flaky] == [500, 500, 200]
    assert len(posts) == 1
    assert posts[0].body["dag_id"] == "n_flaky"
    assert posts[0].body["failing_keys"] == ["DE", "FR"]
    assert len({p.headers["Idempotency-Key"] for p in all_flaky}) == 1  # the receiver can drop repeats


def test_an_unreachable_webhook_is_logged_and_does_not_hide_the_task_failure(
    bed: Any, services: tuple[SmtpBed, Listener]
) -> None:
    _, listener = services
    run_id = bed.runs["n_down"]
    assert bed.task_state("n_down", run_id, "write_erp") == "failed"
    # the next callback still ran: the working webhook got its alert
    posts = listener.wait(lambda p: p.path == "/alerts" and p.body["dag_id"] == "n_down", 1)
    assert len(posts) == 1
    log = bed.task_log("n_down", run_id, "write_erp")
    assert "DropGuardError" in log  # the task's own failure is in its log
    assert "The failure alert was not delivered" in log
    assert "ml_webhook_down" in log
    assert "/gone" not in log.split("The failure alert was not delivered", 1)[1].splitlines()[0]
    assert TOKEN not in log
