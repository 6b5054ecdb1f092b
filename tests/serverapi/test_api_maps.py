"""
The server API's map methods (L{httpstream.serverapi.maps}): map_publish (tags kept), map_remove, map_read_state,
map_read_stream, map_stats, map_clear; refusals for channels that are not map channels.
"""

from __future__ import annotations

from typing import Any

from tests.serverapi.test_api import APITestCase

MAPS = {
    "namespaces": [
        {"name": "board", "subscription_type": "map", "map": {"mode": "persistent"}},
        {"name": "chat"},
    ],
}


class MapMethodTests(APITestCase):
    settings: dict[str, Any] = MAPS

    def call(self, method: str, **request: Any) -> dict[str, Any]:
        return self.ok(self.api.call(method, request))

    def test_publishAndRead(self) -> None:
        first = self.call("map_publish", channel="board:1", key="b", data={"v": 1}, tags={"team": "eng"})
        self.assertEqual(first["offset"], 1)
        self.call("map_publish", channel="board:1", key="a", data={"v": 2})
        state = self.call("map_read_state", channel="board:1", limit=1)
        self.assertEqual([e["key"] for e in state["entries"]], ["a"])
        self.assertEqual((state["cursor"], state["offset"], state["epoch"]), ("a", 2, first["epoch"]))
        rest = self.call("map_read_state", channel="board:1", cursor="a")
        self.assertEqual(rest["entries"], [{"key": "b", "offset": 1, "data": b'{"v":1}', "tags": {"team": "eng"}}])
        self.assertEqual(rest["cursor"], "")

    def test_readOneKey(self) -> None:
        self.call("map_publish", channel="board:1", key="a", data={"v": 1})
        self.call("map_publish", channel="board:1", key="b", data={"v": 2})
        state = self.call("map_read_state", channel="board:1", key="b", asc=True)
        self.assertEqual([(e["key"], e["data"]) for e in state["entries"]], [("b", b'{"v":2}')])
        self.assertEqual((state["offset"], state["cursor"]), (2, ""))
        self.assertEqual(self.call("map_read_state", channel="board:1", key="nope")["entries"], [])
        self.assertEqual(self.error(self.api.call("map_read_state", {"channel": "board:1", "asc": "yes"})), 107)

    def test_removeAndStream(self) -> None:
        self.call("map_publish", channel="board:1", key="k", data={"v": 1}, tags={"team": "eng"})
        removed = self.call("map_remove", channel="board:1", key="k")
        self.assertEqual(removed["offset"], 2)
        again = self.call("map_remove", channel="board:1", key="k")
        self.assertEqual((again["suppressed"], again["suppress_reason"]), (True, "key_not_found"))
        stream = self.call("map_read_stream", channel="board:1", since_offset=1, since_epoch=removed["epoch"])
        self.assertEqual(stream["entries"], [{"key": "k", "offset": 2, "removed": True, "tags": {"team": "eng"}}])
        self.assertEqual(self.call("map_stats", channel="board:1"), {"num_keys": 0})

    def test_streamReversed(self) -> None:
        for n in range(3):
            self.call("map_publish", channel="board:1", key=f"k{n}", data={"v": n})
        stream = self.call("map_read_stream", channel="board:1", reverse=True, limit=2)
        self.assertEqual([e["offset"] for e in stream["entries"]], [3, 2])
        before = self.call("map_read_stream", channel="board:1", reverse=True, since_offset=2, since_epoch=stream["epoch"])
        self.assertEqual([e["key"] for e in before["entries"]], ["k0"])

    def test_keyMode(self) -> None:
        self.call("map_publish", channel="board:1", key="k", data={"v": 1})
        result = self.call("map_publish", channel="board:1", key="k", data={"v": 2}, key_mode="if_new")
        self.assertEqual(result["suppress_reason"], "key_exists")

    def test_idempotencyKey(self) -> None:
        """A retried map_publish / map_remove with its idempotency_key changes nothing: suppressed "idempotency", at the
        first write's position (Centrifugo's answer)."""
        first = self.call("map_publish", channel="board:1", key="k", data={"v": 1}, idempotency_key="p")
        suppressed = {"suppressed": True, "suppress_reason": "idempotency"}
        self.assertEqual(self.call("map_publish", channel="board:1", key="k", data={"v": 2}, idempotency_key="p"),
                         {**first, **suppressed})
        removed = self.call("map_remove", channel="board:1", key="k", idempotency_key="r")
        self.call("map_publish", channel="board:1", key="k", data={"v": 3})
        self.assertEqual(self.call("map_remove", channel="board:1", key="k", idempotency_key="r"),
                         {**removed, **suppressed})
        state = self.call("map_read_state", channel="board:1")
        self.assertEqual([(e["key"], e["data"], e["offset"]) for e in state["entries"]], [("k", b'{"v":3}', 3)])

    def test_clear(self) -> None:
        first = self.call("map_publish", channel="board:1", key="k", data={"v": 1})
        self.assertEqual(self.call("map_clear", channel="board:1"), {})
        state = self.call("map_read_state", channel="board:1")
        self.assertEqual(state["entries"], [])
        self.assertNotEqual(state["epoch"], first["epoch"])

    def test_refusals(self) -> None:
        self.assertEqual(self.error(self.api.call("map_publish", {"channel": "chat:1", "key": "k", "data": {}})), 107)
        self.assertEqual(self.error(self.api.call("map_publish", {"channel": "nope:1", "key": "k", "data": {}})), 102)
        self.assertEqual(self.error(self.api.call("map_publish", {"channel": "board:1", "data": {}})), 107)
        self.assertEqual(self.error(self.api.call("map_publish", {"channel": "board:1", "key": "k"})), 107)
        self.assertEqual(self.error(self.api.call("map_publish", {"channel": "board:1", "key": "k", "data": {},
                                                                  "key_mode": "maybe"})), 107)
        self.assertEqual(self.error(self.api.call("map_remove", {"channel": "board:1"})), 107)
        # An empty key, said or not: bad request (a key "" would also be the first page's cursor).
        self.assertEqual(self.error(self.api.call("map_publish", {"channel": "board:1", "key": "", "data": {}})), 107)
        self.assertEqual(self.error(self.api.call("map_remove", {"channel": "board:1", "key": ""})), 107)
        self.assertEqual(self.call("map_stats", channel="board:1"), {"num_keys": 0})
        self.assertEqual(self.error(self.api.call("map_read_stream", {"channel": "board:1", "since_offset": 5,
                                                                      "since_epoch": "nope"})), 112)
