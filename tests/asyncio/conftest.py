"""Fixtures of the asyncio transport tests: event loops (asyncio and uvloop), TLS, raw HTTP."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any, Callable, Coroutine, Optional, Tuple

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - not on Windows
    uvloop = None  # type: ignore[assignment]

LOOPS = ["asyncio", "uvloop"]

Runner = Callable[..., Any]


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        if uvloop is None:
            pytest.skip("uvloop is not installed")
        return uvloop.new_event_loop()  # type: ignore[no-any-return]
    return asyncio.new_event_loop()


def _finish(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=2))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@pytest.fixture(params=LOOPS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    """The name of the event loop implementation under test."""
    return str(request.param)


@pytest.fixture
def run(loop_kind: str) -> Any:
    """Run a coroutine on a fresh event loop of the parametrized kind, bounded in time."""
    loop = _new_loop(loop_kind)

    def runner(coro: Coroutine[Any, Any, Any], timeout: float = 15.0) -> Any:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))

    yield runner
    _finish(loop)


def _make_cert(directory: Path) -> Optional[Tuple[Path, Path]]:
    """A self-signed certificate for 127.0.0.1 and localhost, or None if no tool can make one."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        pass
    else:  # pragma: no cover - depends on the environment
        import ipaddress

        private = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(private, hashes.SHA256())
        )
        cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    result = subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        capture_output=True,
        timeout=30,
    )
    if result.returncode != 0:  # pragma: no cover - an old openssl
        return None
    return cert, key


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Path]:
    """(certificate, key) of a self-signed certificate made for this run."""
    made = _make_cert(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("cannot make a test certificate: neither 'cryptography' nor 'openssl' found")
    return made


@pytest.fixture
def tls_contexts(tls_files: Tuple[Path, Path]) -> Tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting the test certificate)."""
    cert, key = tls_files
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client

