"""
Tests for L{httpstream.node.frames}: one publication's pushes, encoded once per protocol, variant and shape, and
found by a subscriber with a plain subscript of its key.
"""

from __future__ import annotations

import orjson
from twisted.trial.unittest import SynchronousTestCase

from httpstream.node.frames import PublicationFrames
from httpstream.protocol import codecFor
from httpstream.values import Publication


class PublicationFramesTests(SynchronousTestCase):
    def test_subscriptIsFrame(self) -> None:
        """frames[(protocol, variant, unidirectional)] is frame(protocol, variant, unidirectional): one object."""
        frames = PublicationFrames("news", Publication(data=b'{"n":1}', offset=3), None)
        for protocol in ("json", "protobuf"):
            for unidirectional in (False, True):
                key = (protocol, "plain", unidirectional)
                pushed = frames[key]
                self.assertIs(frames.frame(protocol, "plain", unidirectional), pushed)
                self.assertIs(frames[key], pushed)
        self.assertEqual(len(frames), 4)
        self.assertEqual(orjson.loads(frames[("json", "plain", False)]),  # type: ignore[arg-type]
                         {"push": {"channel": "news", "pub": {"data": {"n": 1}, "offset": 3}}})
        self.assertEqual(orjson.loads(frames[("json", "plain", True)]),  # type: ignore[arg-type]
                         {"channel": "news", "pub": {"data": {"n": 1}, "offset": 3}})

    def test_encodedOnce(self) -> None:
        """Every subscriber after the first gets the very bytes the first one made (equal keys, other tuples)."""
        frames = PublicationFrames("news", Publication(data=b'{"n":1}'), None)
        first = frames[("json", "plain", False)]
        self.assertTrue(all(frames[tuple(["json", "plain", False])] is first for _ in range(10)))  # type: ignore[index]
        self.assertEqual(len(frames), 1)

    def test_notEncodableIsNoneAndKept(self) -> None:
        """Data that is not JSON cannot go to a JSON subscriber: None, decided once."""
        frames = PublicationFrames("bin", Publication(data=b"\xff\x00"), None)
        self.assertIsNone(frames[("json", "plain", False)])
        self.assertIn(("json", "plain", False), frames)
        self.assertIsNotNone(frames[("protobuf", "plain", False)])

    def test_sameAsTheCodec(self) -> None:
        publication = Publication(data=b'{"a":"b"}', offset=7)
        frames = PublicationFrames("c", publication, None)
        expected = codecFor("protobuf").encode_push({"channel": "c", "pub": publication.asDict()}, False)
        self.assertEqual(frames[("protobuf", "plain", False)], expected)
