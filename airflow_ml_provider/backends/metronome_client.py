"""The HTTP client of the Metronome backend: DC/OS IAM login, TLS, retries, error messages.

Authentication: with ``uid``/``password`` the client logs in to the DC/OS IAM
(``POST <origin>/acs/api/v1/auth/login`` ``{"uid", "password"}`` -> ``{"token"}``, ``<origin>``
being the URL's scheme, host and port unless :attr:`MetronomeConfig.login_url` says otherwise)
on first use and sends ``Authorization: token=<token>``. A 401 from any call logs in again once
and repeats that call. With only a pre-issued ``token`` (no password), a 401 raises
:class:`~airflow_ml_provider.exceptions.ConnectionConfigError`: the token is expired or wrong.
Neither configured: no ``Authorization`` header (an open Metronome).

Retries are urllib3's :class:`~urllib3.util.Retry`, mounted on the session's adapters:

* connection errors (nothing was sent) are retried for every method;
* 5xx answers and read errors (the request may have been processed) only for idempotent
  methods (``GET``, ``PUT``, ``DELETE``, ...), so a ``POST`` that starts a run is never sent
  twice by the client;
* at most ``retries`` retries after the first attempt, with urllib3's exponential backoff (the
  first retry at once, the n-th after ``backoff * 2**(n-1)`` seconds, capped at 30 s; a 503's
  ``Retry-After`` is honoured); TLS errors are never retried.

What is still by hand, and why: the IAM re-login on a 401 (urllib3 cannot change the
``Authorization`` header between attempts); turning the final answer into our errors (a 5xx
after retries or a connection failure is a :class:`~airflow_ml_provider.exceptions.BackendError`
naming the method, the path, the attempts and a short, scrubbed body; a TLS failure is a
``ConnectionConfigError`` at once); and the backend's run trigger, which after an ambiguous
failure looks for the run it may have started before posting again
(:meth:`~airflow_ml_provider.backends.metronome.MetronomeBackend.submit`).

TLS: verified by default (``verify=True``), or against a CA bundle path; ``verify=False`` only if
configured. The connection's choice wins over ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``
(:func:`~airflow_ml_provider.utils.tls.connection_tls_session`).

Secrets: the password and token are only ever sent in the login ``POST`` body and the
``Authorization`` header; they are not in ``repr(config)``, in log lines or in exception text
(every message built from a server answer is scrubbed of them and of :attr:`MetronomeClient.secrets`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from airflow_ml_provider.exceptions import BackendError, ConnectionConfigError, MetronomeValidationError
from airflow_ml_provider.utils.tls import connection_tls_session

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

LOGIN_PATH = "/acs/api/v1/auth/login"
BACKOFF_CAP = 30.0


class MetronomeConfig(NamedTuple):
    """How to reach Metronome; built by the hook from an ``ml_metronome`` connection.

    :param url: Metronome's base URL, e.g. ``https://dcos.example.com/service/metronome``.
    :param uid: DC/OS IAM user id for the login (with ``password``).
    :param password: its password (secret; not shown by ``repr``).
    :param token: a pre-issued DC/OS auth token, used until it is rejected (secret).
    :param verify: TLS verification: ``True``, ``False`` or a CA bundle path.
    :param timeout: seconds per HTTP request (connect and read).
    :param retries: extra attempts after a connection error, or after a timeout or 5xx answer of an
        idempotent request (see the module docstring).
    :param backoff: urllib3's backoff factor in seconds (delays double per attempt, capped at 30 s).
    :param stop_timeout: seconds ``cancel`` waits for a stopped run to leave the active list.
    :param login_url: the IAM login URL; default ``<scheme://host:port of url>/acs/api/v1/auth/login``.
    :param max_launch_delay: ``run.maxLaunchDelay``: seconds a run may wait for resources.
    :param force_pull: ``run.docker.forcePullImage``.
    :param user: ``run.user`` (the agent's OS user), or ``None`` for Metronome's default.
    """

    url: str
    uid: str = ""
    password: str = ""
    token: str | None = None
    verify: bool | str = True
    timeout: float = 30.0
    retries: int = 5
    backoff: float = 0.5
    stop_timeout: float = 30.0
    login_url: str | None = None
    max_launch_delay: int = 3600
    force_pull: bool = False
    user: str | None = None

    def __repr__(self) -> str:
        fields = []
        for name, value in zip(self._fields, self, strict=True):
            if name in ("password", "token") and value:
                value = "***"
            fields.append(f"{name}={value!r}")
        return f"MetronomeConfig({', '.join(fields)})"

    def iam_login_url(self) -> str:
        """Where to log in: :attr:`login_url`, or the DC/OS IAM at the URL's origin."""
        if self.login_url:
            return self.login_url
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{LOGIN_PATH}"


def retry_policy(config: MetronomeConfig) -> Any:
    """The urllib3 ``Retry`` of the module docstring for ``config``."""
    from urllib3.util import Retry

    return Retry(
        total=max(0, int(config.retries)),
        other=0,  # TLS and other unexpected errors: never retried
        allowed_methods=Retry.DEFAULT_ALLOWED_METHODS,  # 5xx and read errors: idempotent methods only
        status_forcelist=range(500, 600),
        backoff_factor=config.backoff,
        backoff_max=BACKOFF_CAP,
        raise_on_status=False,  # the last 5xx answer comes back, so the error can quote it
        respect_retry_after_header=True,
    )


def _attempts(response: requests.Response) -> int:
    retries = getattr(response.raw, "retries", None)
    return 1 + len(retries.history) if retries is not None else 1


class MetronomeClient:
    """Metronome's REST API and the DC/OS IAM login over one session (see the module docstring).

    :param config: where Metronome is and how to log in.
    """

    def __init__(self, config: MetronomeConfig) -> None:
        self.config = config
        self.base = config.url.rstrip("/")
        #: more values to keep out of messages (the secret environment of the job being submitted)
        self.secrets: tuple[str, ...] = ()
        self._token: str | None = config.token or None
        self._session_obj: requests.Session | None = None
        self._lock = threading.Lock()

    @property
    def _session(self) -> requests.Session:
        if self._session_obj is None:
            from requests.adapters import HTTPAdapter

            session = connection_tls_session(self.config.verify)
            adapter = HTTPAdapter(max_retries=retry_policy(self.config))
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            self._session_obj = session
        return self._session_obj

    def scrub(self, text: str) -> str:
        """``text`` without the password, the token or :attr:`secrets`."""
        for secret in (self.config.password, self.config.token, self._token, *self.secrets):
            if secret and len(secret) >= 3:
                text = text.replace(secret, "***")
        return text

    def short(self, response: requests.Response) -> str:
        """The answer's body in one short, scrubbed line (the title of an HTML error page)."""
        text = " ".join((response.text or "").split())
        if text.startswith("<"):  # Admin Router's HTML error page: the title says it all
            match = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE)
            text = match.group(1) if match else text
        return self.scrub(text[:300])

    def _send(
        self,
        method: str,
        url: str,
        display: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        authorized: bool = True,
    ) -> requests.Response:
        """One request (urllib3 retries inside); answers below 500 are returned, the rest raise."""
        import requests

        headers = {"Accept": "application/json"}
        if authorized and self._token:
            headers["Authorization"] = f"token={self._token}"
        try:
            response = self._session.request(
                method, url, json=json, params=params, headers=headers, timeout=self.config.timeout
            )
        except requests.exceptions.SSLError as e:
            raise ConnectionConfigError(
                f"Metronome {method} {display}: TLS verification failed ({self.scrub(str(e))[:300]}); "
                "set the connection's ca_bundle (or verify) to the cluster's CA certificate file."
            ) from None
        except (requests.ConnectionError, requests.Timeout) as e:
            import urllib3.exceptions

            exhausted = bool(e.args) and isinstance(e.args[0], urllib3.exceptions.MaxRetryError)
            attempts = 1 + max(0, int(self.config.retries)) if exhausted else 1
            raise BackendError(
                f"Metronome {method} {display} failed after {attempts} attempt(s): "
                f"{type(e).__name__}: {self.scrub(str(e))[:300]} (at {self.scrub(self.base)})"
            ) from None
        if response.status_code >= 500:
            raise BackendError(
                f"Metronome {method} {display} failed after {_attempts(response)} attempt(s): "
                f"HTTP {response.status_code}: {self.short(response)} (at {self.scrub(self.base)})"
            )
        log.debug("Metronome %s %s -> %s", method, display, response.status_code)
        return response

    def _login(self) -> None:
        """Log in to the DC/OS IAM with uid and password; stores the token."""
        url = self.config.iam_login_url()
        with self._lock:
            body = {"uid": self.config.uid, "password": self.config.password}
            response = self._send("POST", url, LOGIN_PATH, json=body, authorized=False)
            if response.status_code in (401, 403):
                raise ConnectionConfigError(
                    f"DC/OS IAM at {url} refused the login of uid {self.config.uid!r} "
                    f"(HTTP {response.status_code}: {self.short(response)}); "
                    "check the connection's login and password."
                )
            if response.status_code != 200:
                raise BackendError(f"DC/OS IAM login at {url}: HTTP {response.status_code}: {self.short(response)}")
            try:
                token = response.json()["token"]
            except (ValueError, KeyError, TypeError):
                raise BackendError(f"DC/OS IAM login at {url} answered without a token.") from None
            self._token = str(token)
            log.info("Logged in to DC/OS IAM at %s as %s", url, self.config.uid)

    def _can_login(self) -> bool:
        return bool(self.config.uid and self.config.password)

    def request(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> requests.Response:
        """A Metronome API call (``path`` below the base URL); logs in first, or again once on a 401.

        Returns every answer below 500 except 401; raises :class:`BackendError` for a 5xx (after
        retries) or no answer, ``ConnectionConfigError`` for a rejected login, token or TLS.
        """
        if self._token is None and self._can_login():
            self._login()
        response = self._send(method, self.base + path, path, json=json, params=params)
        if response.status_code == 401 and self._can_login():
            log.info("Metronome %s %s: token rejected (HTTP 401); logging in again.", method, path)
            self._login()
            response = self._send(method, self.base + path, path, json=json, params=params)
        if response.status_code == 401:
            if self._can_login():
                raise ConnectionConfigError(f"Metronome {method} {path}: still 401; check the IAM user's permissions.")
            raise ConnectionConfigError(
                f"Metronome {method} {path}: the configured token was rejected (expired or wrong); "
                "give the connection a fresh token, or the IAM login and password."
            )
        return response

    def error(self, method: str, path: str, response: requests.Response) -> BackendError:
        """The error for an unexpected answer; a 422 lists Metronome's validation details."""
        if response.status_code == 422:
            try:
                data = response.json()
                details = "; ".join(
                    f"{d.get('path', '?')}: {', '.join(map(str, d.get('errors', [])))}" for d in data.get("details", [])
                )
                text = f"{data.get('message', 'Object is not valid')}: {details}" if details else str(data)
            except (ValueError, AttributeError, TypeError):
                text = self.short(response)
            return MetronomeValidationError(
                f"Metronome refused the job definition ({method} {path}, HTTP 422): {self.scrub(text)[:1000]}"
            )
        return BackendError(f"Metronome {method} {path}: HTTP {response.status_code}: {self.short(response)}")

    def get_job(self, job_id: str, *embed: str) -> dict[str, Any] | None:
        """``GET /v1/jobs/{id}`` with ``embed`` (``activeRuns``, ``history``); ``None`` if unknown."""
        from urllib.parse import quote

        path = f"/v1/jobs/{quote(job_id, safe='')}"
        response = self.request("GET", path, params={"embed": list(embed)} if embed else None)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self.error("GET", path, response)
        data: dict[str, Any] = response.json()
        return data

    def close(self) -> None:
        """Close the HTTP session (a new one is made if the client is used again)."""
        if self._session_obj is not None:
            self._session_obj.close()
            self._session_obj = None
