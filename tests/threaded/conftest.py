"""Fixtures of the threaded transport tests: servers on 127.0.0.1:0, clients, TLS."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
from threaded_support import HOST, echo, uri

from transports.threaded import Server, connect, serve


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """Start ``serve(handler, 127.0.0.1, 0, **options)``; shut it down afterwards."""
    servers: List[Server] = []

    def start(handler: Callable[..., Any] = echo, **options: Any) -> Server:
        if "unix_path" in options:
            server = serve(handler, None, 0, **options)
        else:
            server = serve(handler, HOST, 0, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown(timeout=3)


@pytest.fixture
def echo_server(start_server: Callable[..., Server]) -> Server:
    return start_server(echo, max_size=2**25)


@pytest.fixture
def client() -> Iterator[Callable[..., Any]]:
    """``connect(uri, **options)`` with an ``open_timeout``; closed afterwards."""
    clients: List[Any] = []

    def open_client(target: Any, path: str = "/", **options: Any) -> Any:
        options.setdefault("open_timeout", 5)
        options.setdefault("close_timeout", 3)
        address = target if isinstance(target, str) else uri(target, path)
        ws = connect(address, **options)
        clients.append(ws)
        return ws

    yield open_client
    for ws in clients:
        ws.abort()


def _make_cert(directory: Path) -> tuple:
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("neither cryptography nor openssl is available to make a certificate")
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
                "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress

    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert, key


@pytest.fixture(scope="session")
def tls_contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(server context, client context trusting it) for a fresh self-signed certificate."""
    cert, key = _make_cert(tmp_path_factory.mktemp("tls"))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    return server_ctx, client_ctx
