"""
The server API's key on the in-memory server (issue 14, item 5): without a key, with a wrong one, in a header or
the query string as Centrifugo takes it; a refusal tells nothing. (tests/test_security.py checks the comparison
runs in constant time.)
"""

from __future__ import annotations

import orjson
import pytest

from httpstream.testing import MemoryServer
from tests.web.security import API_KEY, WRONG_KEY, api, securityServer, status

server = pytest.fixture(securityServer, name="server")


@pytest.mark.parametrize(
    "headers, query, expected",
    [
        ({}, "", 401),
        ({"X-API-Key": WRONG_KEY}, "", 401),
        ({"X-API-Key": API_KEY[:-1]}, "", 401),
        ({"X-API-Key": API_KEY + "x"}, "", 401),
        ({"Authorization": f"Bearer {API_KEY}"}, "", 401),
        ({}, f"?api_key={WRONG_KEY}", 401),
        ({}, "?api_key=", 401),
        ({"X-API-Key": API_KEY}, "", 200),
        ({"Authorization": f"apikey {API_KEY}"}, "", 200),
        # Centrifugo's APIKeyAuth takes the key from the query string too, api_insecure or not, and tries it when
        # the headers did not hold the key.
        ({}, f"?api_key={API_KEY}", 200),
        ({"X-API-Key": WRONG_KEY}, f"?api_key={API_KEY}", 200),
        ({"X-API-Key": API_KEY}, f"?api_key={WRONG_KEY}", 200),
        ({"Authorization": f"apikey {API_KEY} extra"}, "", 401),
    ],
)
def test_apiKey(server: MemoryServer, headers: dict[str, str], query: str, expected: int) -> None:
    code, body = status(api(server, "info", {}, headers, query))
    assert code == expected
    if expected == 401:
        assert body == b""  # nothing told, the request's body unread
    else:
        assert "nodes" in orjson.loads(body)["result"]


def test_apiRefusalTellsNothingAboutTheBody(server: MemoryServer) -> None:
    assert status(api(server, "publish", b"{not json", {})) == (401, b"")
