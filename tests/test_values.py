"""
The values that cross the seams (httpstream.values): frozen, and turned into the protocol's dict form in one place,
in the key order and with the zero values left out as the JSON codec writes them on the wire.
"""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from httpstream.protocol import JSON, PROTOBUF, client_pb2
from httpstream.values import ClientInfo, HistoryResult, Publication, StreamPosition


class ClientInfoTests(SynchronousTestCase):
    def test_asDict(self) -> None:
        """User and client always (anonymous is ""), the infos only when set."""
        self.assertEqual(ClientInfo("", "c1").asDict(), {"user": "", "client": "c1"})
        self.assertEqual(
            list(ClientInfo("u", "c", b"{}", b"[]").asDict().items()),
            [("user", "u"), ("client", "c"), ("conn_info", b"{}"), ("chan_info", b"[]")],
        )
        self.assertEqual(ClientInfo("u", "c", chanInfo=b"1").asDict(), {"user": "u", "client": "c", "chan_info": b"1"})

    def test_frozen(self) -> None:
        info = ClientInfo("u", "c")
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, info, "user", "v")
        self.assertEqual(info, ClientInfo("u", "c"))
        self.assertEqual(len({info, ClientInfo("u", "c")}), 1)


class PublicationTests(SynchronousTestCase):
    def test_asDictWire(self) -> None:
        """
        The JSON a push carries: data, info, tags, offset, delta in that order, zero values left out; Protobuf
        reads the same dict.
        """
        publication = Publication(b'{"a":1}', 7, ClientInfo("u", "c", b'{"n":1}'), {"k": "v"}, True)
        push = {"push": {"channel": "ch", "pub": publication.asDict()}}
        self.assertEqual(
            JSON.encode_reply(push),
            b'{"push":{"channel":"ch","pub":{"data":{"a":1},"info":{"user":"u","client":"c","conn_info":{"n":1}},'
            b'"tags":{"k":"v"},"offset":7,"delta":true}}}',
        )
        plain = {"push": {"pub": Publication(b"1").asDict()}}
        self.assertEqual(JSON.encode_reply(plain), b'{"push":{"pub":{"data":1}}}')
        pub = client_pb2.Reply.FromString(PROTOBUF.encode_reply(push)).push.pub
        self.assertEqual((pub.data, pub.offset, pub.info.user, dict(pub.tags), pub.delta),
                         (b'{"a":1}', 7, "u", {"k": "v"}, True))

    def test_tagsCopied(self) -> None:
        """The publisher's tags are copied: changing its dict afterwards changes no publication."""
        tags = {"k": "v"}
        publication = Publication(b"1", tags=tags)
        tags["k"] = "changed"
        self.assertEqual(publication.tags, {"k": "v"})
        self.assertEqual(Publication(b"1", tags=None).tags, {})

    def test_frozen(self) -> None:
        publication = Publication(b"1", 1)
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, publication, "offset", 2)
        self.assertEqual(attrs.evolve(publication, offset=2), Publication(b"1", 2))


class PositionTests(SynchronousTestCase):
    def test_streamPosition(self) -> None:
        self.assertEqual(StreamPosition(3, "e").asDict(), {"offset": 3, "epoch": "e"})
        self.assertEqual(StreamPosition(), StreamPosition(0, ""))

    def test_historyResult(self) -> None:
        """A history reply: every key present (an empty list too), publications in their dict form."""
        result = HistoryResult([Publication(b"1", 4)], 4, "e")
        self.assertEqual(result.position, StreamPosition(4, "e"))
        self.assertEqual(result.asDict(), {"publications": [{"data": b"1", "offset": 4}], "offset": 4, "epoch": "e"})
        self.assertEqual(HistoryResult([], 0, "e").asDict(), {"publications": [], "offset": 0, "epoch": "e"})
