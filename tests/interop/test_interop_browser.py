"""Headless Chromium (Debian's package, driven by Playwright) against the demo server.

Starts `python -m transports serve` (threaded, then asyncio), loads http://127.0.0.1:P/, connects
from the demo page, sends a text message and a 1 MiB binary message, checks the echoes shown on
the page, disconnects, and saves a screenshot to tests/interop/artifacts/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from interop_support import ARTIFACTS, ServerRegistry, self_signed_cert

pytestmark = pytest.mark.interop

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: scripts/interop installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60000)
        try:
            yield b
        finally:
            b.close()


@pytest.mark.parametrize("transport", ["threaded", "asyncio"])
def test_demo_page(browser: Any, transport: str, servers: ServerRegistry) -> None:
    server = servers.start(transport, True)
    page = browser.new_page(viewport={"width": 900, "height": 760})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        base = f"http://127.0.0.1:{server.port}/"
        page.goto(base)
        assert page.title() == "wscore echo demo"
        assert page.input_value("#url") == f"ws://127.0.0.1:{server.port}/"
        assert page.is_disabled("#send") and page.is_disabled("#disconnect")

        page.click("#connect")
        page.wait_for_function("window.demo.state === 'open'")
        assert "Connected" in page.text_content("#status")

        page.fill("#message", "Hello, wörld! 😀")
        page.click("#send")
        page.wait_for_function("window.demo.received.length >= 1")

        page.fill("#binsize", str(1 << 20))
        page.click("#sendbin")
        page.wait_for_function("window.demo.received.length >= 2")

        received = page.evaluate("window.demo.received")
        assert received[0] == {"type": "text", "data": "Hello, wörld! 😀"}
        assert received[1] == {"type": "binary", "size": 1 << 20}
        items = page.locator("#messages li").all_text_contents()
        assert "Hello, wörld! 😀" in items[0]
        assert "binary, 1048576 bytes" in items[1]

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"demo-{transport}-open.png"), full_page=True)

        page.click("#disconnect")
        page.wait_for_function("window.demo.closed !== null")
        closed = page.evaluate("window.demo.closed")
        assert closed["code"] == 1000, closed
        assert closed["reason"] in ("bye from the browser", ""), closed  # echo is optional
        assert closed["wasClean"], closed
        assert page.evaluate("window.demo.state") == "closed"
        log = page.locator("#log li").all_text_contents()
        assert any("open" in line for line in log), log
        assert any("close 1000" in line for line in log), log
        page.screenshot(path=str(ARTIFACTS / f"demo-{transport}.png"), full_page=True)
        assert not errors, errors
    finally:
        page.close()
        server.stop()


@pytest.mark.parametrize("transport", ["threaded", "asyncio"])
def test_demo_page_tls(
    browser: Any, transport: str, servers: ServerRegistry, tmp_path: Path
) -> None:
    """Served over https, the page defaults to wss://host/ and talks to the server over TLS."""
    pair = self_signed_cert(tmp_path)
    if pair is None:
        pytest.skip("no openssl command to make a certificate")
    cert, key = pair
    server = servers.start(transport, True, ["--certfile", str(cert), "--keyfile", str(key)])
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(f"https://127.0.0.1:{server.port}/")
        assert page.input_value("#url") == f"wss://127.0.0.1:{server.port}/"
        page.click("#connect")
        page.wait_for_function("window.demo.state === 'open' || window.demo.closed !== null")
        assert page.evaluate("window.demo.state") == "open", page.evaluate("window.demo.events")
        page.fill("#message", "over TLS")
        page.click("#send")
        page.wait_for_function("window.demo.received.length >= 1")
        assert page.evaluate("window.demo.received") == [{"type": "text", "data": "over TLS"}]
        page.click("#disconnect")
        page.wait_for_function("window.demo.closed !== null")
        assert page.evaluate("window.demo.closed")["code"] == 1000
    finally:
        context.close()
        server.stop()
