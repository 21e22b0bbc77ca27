"""A real SMTP server (aiosmtpd) on 127.0.0.1 at a free port that keeps every message it receives.

Tests point an Airflow ``smtp`` connection at it (``host=127.0.0.1``, :attr:`SmtpBed.port`,
extras ``disable_ssl``/``disable_tls`` true) and read :attr:`SmtpBed.messages`. With ``login`` and
``password`` the server requires ``AUTH`` (PLAIN or LOGIN, over plain text: loopback only) and
refuses any other credentials, so a test also proves the client logged in with the right ones.

Command line (stays up until Ctrl-C, prints each message's subject)::

    python -m scripts.testbed.smtp_bed
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any

from scripts.testbed.loopback_http import free_port


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the server received it.

    :param mail_from: the envelope sender.
    :param rcpt_tos: the envelope recipients.
    :param message: the parsed message.
    :param raw: the message's bytes as sent.
    :param login: the user the client authenticated as (``None``: no AUTH).
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    login: str | None

    @property
    def subject(self) -> str:
        """The decoded Subject header."""
        return str(self.message["Subject"] or "")

    def body_text(self) -> str:
        """Every text part (plain and HTML), decoded and joined."""
        parts = []
        for part in self.message.walk():
            if part.get_content_maintype() == "text":
                parts.append(str(part.get_content()))
        return "\n".join(parts)


class _Handler:
    def __init__(self, bed: SmtpBed) -> None:
        self._bed = bed

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        auth = session.auth_data
        login = auth.login.decode() if auth is not None and hasattr(auth, "login") else None
        mail = ReceivedMail(str(envelope.mail_from), tuple(envelope.rcpt_tos), message, raw, login)
        with self._bed._cond:
            self._bed.messages.append(mail)
            self._bed._cond.notify_all()
        return "250 Message accepted for delivery"


class SmtpBed:
    """aiosmtpd's threaded server on 127.0.0.1; use as a context manager.

    :param login: with ``password``, the only credentials ``AUTH`` accepts (then AUTH is required).
    :param password: the password for ``login``.
    """

    def __init__(self, *, login: str | None = None, password: str | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.login = login
        self.password = password
        #: Every message received, in order.
        self.messages: list[ReceivedMail] = []
        self._cond = threading.Condition()
        self._controller: Any = None

    def _authenticator(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.login
            and auth_data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def start(self) -> SmtpBed:
        """Listen (returns once the server answers)."""
        from aiosmtpd.controller import Controller

        auth: dict[str, Any] = {}
        if self.login is not None and self.password is not None:
            auth = {"authenticator": self._authenticator, "auth_required": True, "auth_require_tls": False}
        # AUTH over plain text is on purpose (loopback only); aiosmtpd warns about it on each connection
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, **auth)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int = 1, timeout: float = 30) -> list[ReceivedMail]:
        """The messages once at least ``count`` arrived; :class:`TimeoutError` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.messages)} of {count} messages arrived within {timeout:g} s")
                self._cond.wait(left)
            return list(self.messages)

    def connection(self, *, from_email: str = "airflow@example.com") -> dict[str, Any]:
        """An Airflow ``smtp`` connection (as ``AIRFLOW_CONN_*`` JSON) for this server."""
        conn: dict[str, Any] = {
            "conn_type": "smtp",
            "host": self.host,
            "port": self.port,
            "extra": {
                "disable_ssl": True,
                "disable_tls": True,
                "from_email": from_email,
                "timeout": 10,
                "retry_limit": 1,
            },
        }
        if self.login is not None:
            conn["login"] = self.login
            conn["password"] = self.password
        return conn

    def __enter__(self) -> SmtpBed:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":  # pragma: no cover - manual use
    with SmtpBed() as bed:
        print(f"SMTP on {bed.host}:{bed.port}", flush=True)
        seen = 0
        try:
            while True:
                mails = bed.wait_for(seen + 1, timeout=3600)
                for mail in mails[seen:]:
                    print(mail.subject, flush=True)
                seen = len(mails)
        except KeyboardInterrupt:
            pass
