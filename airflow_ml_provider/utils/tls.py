"""A requests session whose TLS verification is the connection's, whatever the environment says.

requests merges environment settings (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) *over* a
session's ``verify`` for every request, so a plain ``Session.verify`` would silently ignore the
connection's ``verify=false`` or its CA bundle on any worker that sets those variables. No
library setting turns that merge off, so this module overrides the one method that does it.
Used by every hook that speaks HTTPS through requests (WebHDFS, Metronome).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests


def connection_tls_session(verify: bool | str) -> requests.Session:
    """A new session that verifies TLS exactly as ``verify`` says (``True``, ``False`` or a CA path)."""
    import requests

    class _ConnectionTlsSession(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            settings = super().merge_environment_settings(*args, **kwargs)
            settings["verify"] = self.verify
            return settings

    session = _ConnectionTlsSession()
    session.verify = verify
    return session
