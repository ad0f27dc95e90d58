"""Fixtures of the interop tests (run by scripts/interop, or `pytest -m interop tests/interop`).

``--standin-server`` replaces our server (``python -m transports serve``) by the stand-in
websockets_peer.py, which has the same command line and behaviour: a way to check the tests
themselves while our transports are not ready.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from interop_support import ServerRegistry


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--standin-server",
        action="store_true",
        default=False,
        help="interop: test the websockets stand-in instead of `python -m transports serve`",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every test in this folder is an interop test, marked or not.
    for item in items:
        if "tests/interop/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="session")
def standin_server(request: pytest.FixtureRequest) -> bool:
    """True when the stand-in websockets server plays our server (--standin-server)."""
    return bool(request.config.getoption("--standin-server"))


@pytest.fixture(scope="session")
def servers(standin_server: bool) -> Iterator[ServerRegistry]:
    registry = ServerRegistry(standin=standin_server)
    yield registry
    registry.close_all()
