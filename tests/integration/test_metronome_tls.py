"""TLS to Metronome, end to end: the connection's ``verify`` reaches the wire and stays on.

The Metronome test server (:mod:`scripts.testbed.metronome_server`) serves HTTPS with a server
certificate signed by a throwaway CA made here (``cryptography``), so "verify with this CA",
"verify with the default CAs" and "a typo" are checked against a real TLS handshake, through the
hook exactly as a task reads an ``ml_metronome`` connection.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from airflow_ml_provider.backends.metronome import MetronomeBackend
from airflow_ml_provider.exceptions import ConnectionConfigError
from airflow_ml_provider.hooks.container import MetronomeJobHook
from scripts.testbed.metronome_server import MetronomeTestServer

pytestmark = pytest.mark.integration

PASSWORD = "pa55-w0rd-never-logged"
CONN_ID = "metronome_tls"


class Pki(NamedTuple):
    ca: Path  # the CA certificate that signed the server's
    other_ca: Path  # a CA that did not
    cert: Path  # the server certificate (127.0.0.1)
    key: Path


def _ca(name: str) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # key_cert_sign, crl_sign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    root = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = _ca("airflow-ml-provider test CA")
    other_cert, _ = _ca("some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = Pki(root / "ca.pem", root / "other-ca.pem", root / "server.pem", root / "server.key")
    paths.ca.write_bytes(ca_cert.public_bytes(pem))
    paths.other_ca.write_bytes(other_cert.public_bytes(pem))
    paths.cert.write_bytes(cert.public_bytes(pem))
    paths.key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


@pytest.fixture
def server(pki: Pki) -> Iterator[MetronomeTestServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert, pki.key)
    with MetronomeTestServer(password=PASSWORD, tls=context) as srv:
        yield srv


def backend_from_connection(monkeypatch: pytest.MonkeyPatch, url: str, **extra: Any) -> MetronomeBackend:
    """The backend a task builds from an ``ml_metronome`` connection with these extras."""
    conn = {"conn_type": "ml_metronome", "host": url, "login": "admin", "password": PASSWORD, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    backend = MetronomeJobHook(conn_id=CONN_ID).get_backend()
    assert isinstance(backend, MetronomeBackend)
    return backend


def test_verify_with_the_connections_ca_path_succeeds(
    server: MetronomeTestServer, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = backend_from_connection(monkeypatch, server.url, verify=str(pki.ca), retries=0)
    assert backend.config.verify == str(pki.ca)
    assert backend.find("ml-any-0000000040") is None  # login and GET over verified TLS
    assert server.logins == 1
    backend.close()
    via_bundle = backend_from_connection(monkeypatch, server.url, ca_bundle=str(pki.ca))
    assert via_bundle.find("ml-any-0000000040") is None
    via_bundle.close()


def test_verify_true_without_the_ca_fails_with_a_tls_error_that_says_so(
    server: MetronomeTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for extra in ({}, {"verify": True}, {"verify": "true"}, {"verify": None}):
        backend = backend_from_connection(monkeypatch, server.url, retries=3, **extra)
        assert backend.config.verify is True
        with pytest.raises(ConnectionConfigError, match=r"TLS verification failed.*CERTIFICATE_VERIFY_FAILED"):
            backend.find("ml-any-0000000041")
        backend.close()
    assert server.requests == []  # nothing was sent over an unverified connection
    assert server.logins == 0


@pytest.mark.parametrize("typo", ["ture", "flase", "yes!", "ca.pem", "/etc/ssl/no-such-corp-ca.pem"])
def test_a_typo_in_verify_fails_before_any_request(
    server: MetronomeTestServer, typo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConnectionConfigError, match=rf"'{CONN_ID}'.*'verify'"):
        backend_from_connection(monkeypatch, server.url, verify=typo)
    assert server.requests == []


def test_the_environments_ca_bundle_does_not_override_the_connection(
    server: MetronomeTestServer, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the connection trusts our CA; the environment points elsewhere: the connection wins
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(variable, str(pki.other_ca))
    backend = backend_from_connection(monkeypatch, server.url, verify=str(pki.ca))
    assert backend.find("ml-any-0000000042") is None
    backend.close()
    # the environment trusts our CA, the connection says "the default CAs": still refused
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(variable, str(pki.ca))
    strict = backend_from_connection(monkeypatch, server.url, retries=0)
    with pytest.raises(ConnectionConfigError, match="TLS verification failed"):
        strict.find("ml-any-0000000042")
    strict.close()


def test_verify_false_is_only_what_the_connection_says(
    server: MetronomeTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = backend_from_connection(monkeypatch, server.url, verify="false")
    assert backend.config.verify is False
    assert backend.find("ml-any-0000000043") is None
    backend.close()


def test_tls_is_verified_by_default(server: MetronomeTestServer, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend's own default (no hook): verify=True, and the config wins over the environment."""
    from airflow_ml_provider.backends.metronome import MetronomeConfig

    def make(**kwargs: Any) -> MetronomeBackend:
        return MetronomeBackend(MetronomeConfig(url=server.url, uid="admin", password=PASSWORD, backoff=0.01, **kwargs))

    backend = make()
    assert backend.config.verify is True
    with pytest.raises(ConnectionConfigError, match=r"TLS verification failed.*ca_bundle"):
        backend.find("ml-any-0000000023")
    assert server.requests == []  # nothing was sent over the unverified connection
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))
    with pytest.raises(ConnectionConfigError, match="TLS verification failed"):
        make().find("ml-any-0000000023")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    trusted = make(verify=str(pki.ca))
    assert trusted.find("ml-any-0000000023") is None
    assert server.logins == 1
    trusted.close()
