"""
L{httpstream.readers}: a JSON object read field by field with Go's types, each mistake a L{FieldError} naming
the field by its path.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from httpstream.readers import INT32, UINT32, UINT64, Base64Error, FieldError, Fields, SubOptions


class FieldsTests(SynchronousTestCase):
    def error(self, read: object, path: str) -> FieldError:
        error = self.assertRaises(FieldError, read)
        self.assertEqual(error.path, path)
        return error

    def test_notAnObject(self) -> None:
        for value in (None, [], "x", 1, True):
            self.assertEqual(self.assertRaises(FieldError, Fields, value).path, "")
        self.assertEqual(self.assertRaises(FieldError, Fields, 5, "result").path, "result")

    def test_absentAndNullAreZero(self) -> None:
        """Go leaves a missing or null field at its zero value."""
        f = Fields({"s": None, "i": None, "b": None, "l": None, "m": None, "o": None, "r": None})
        for key in ("s", "missing"):
            self.assertEqual(f.string(key), "")
            self.assertEqual(f.integer(key), 0)
            self.assertIs(f.boolean(key), False)
            self.assertEqual(f.strings(key), [])
            self.assertEqual(f.stringMap(key), {})
            self.assertIsNone(f.object(key))
            self.assertIsNone(f.raw(key))
            self.assertIsNone(f.list(key))
            self.assertIsNone(f.payload(key))
        self.assertEqual(f.string("s", "default"), "default")

    def test_types(self) -> None:
        f = Fields({"s": 1, "i": "1", "b": 1, "l": "x", "ls": ["a", 1], "m": [], "ms": {"k": 1}, "o": [1]})
        self.error(lambda: f.string("s"), "s")
        self.error(lambda: f.integer("i"), "i")
        self.error(lambda: f.boolean("b"), "b")
        self.error(lambda: f.list("l"), "l")
        self.error(lambda: f.strings("ls"), "ls")
        self.error(lambda: f.stringMap("m"), "m")
        self.error(lambda: f.stringMap("ms"), "ms.k")
        self.error(lambda: f.object("o"), "o")

    def test_integers(self) -> None:
        """Integers only (not booleans, not floats even when whole), within the Go type's range."""
        f = Fields({"t": True, "f": 1.0, "neg": -1, "big": 2**32, "ok": 2**32 - 1, "i32": -(2**31)})
        self.error(lambda: f.integer("t"), "t")
        self.error(lambda: f.integer("f"), "f")
        self.error(lambda: f.integer("neg", UINT64), "neg")
        self.error(lambda: f.integer("big", UINT32), "big")
        self.assertEqual(f.integer("ok", UINT32), 2**32 - 1)
        self.assertEqual(f.integer("i32", INT32), -(2**31))
        error = self.error(lambda: f.integer("big", INT32), "big")
        self.assertIn("an integer in [-2147483648, 2147483647]", str(error))

    def test_nestedPaths(self) -> None:
        f = Fields({"disconnect": {"code": "x"}, "subs": {"ch": {"override": {"presence": {"value": 1}}}}})
        self.error(lambda: f.object("disconnect").integer("code"), "disconnect.code")  # type: ignore[union-attr]
        presence = f.object("subs").object("ch").object("override").object("presence")  # type: ignore[union-attr]
        self.error(lambda: presence.boolean("value"), "subs.ch.override.presence.value")  # type: ignore[union-attr]

    def test_longPathCut(self) -> None:
        """Map keys come from outside: a path in a message is cut short."""
        error = self.error(lambda: Fields({"tags": {"k" * 10_000: 1}}).stringMap("tags"), "tags." + "k" * 59 + "...")
        self.assertLess(len(str(error)), 100)

    def test_raw(self) -> None:
        """Embedded JSON as compact bytes; bytes are taken as already encoded; what JSON cannot hold is an error."""
        f = Fields({"d": {"a": [1, "x"]}, "s": "text", "b": b'{"x":1}', "bad": object()})
        self.assertEqual(f.raw("d"), b'{"a":[1,"x"]}')
        self.assertEqual(f.raw("s"), b'"text"')
        self.assertEqual(f.raw("b"), b'{"x":1}')
        self.error(lambda: f.raw("bad"), "bad")

    def test_payload(self) -> None:
        """b64<key> wins when non-empty; bad base64 is its own error; an empty one falls back to <key>."""
        self.assertEqual(Fields({"b64data": "eyJ4IjoxfQ==", "data": 1}).payload("data"), b'{"x":1}')
        self.assertEqual(Fields({"b64data": "", "data": 1}).payload("data"), b"1")
        for bad in ("not base64!", "é"):
            error = self.assertRaises(Base64Error, Fields({"b64info": bad}).payload, "info")
            self.assertEqual(error.path, "b64info")
        self.error(lambda: Fields({"b64data": 5}).payload("data"), "b64data")

    def test_number(self) -> None:
        """Any JSON number (a JWT's NumericDate), not a boolean or a string."""
        f = Fields({"i": 5, "f": 1.5, "t": True, "s": "5"})
        self.assertEqual((f.number("i"), f.number("f"), f.number("missing")), (5, 1.5, None))
        self.error(lambda: f.number("t"), "t")
        self.error(lambda: f.number("s"), "s")


class SubOptionsTests(SynchronousTestCase):
    """
    The one reader of a server-granted subscription's options (token subs, connect proxy subs, API subscribe).
    """

    def test_read(self) -> None:
        options = SubOptions.read(Fields({
            "info": {"a": 1}, "b64data": "AAE=", "expire_at": 7,
            "override": {"presence": {"value": True}, "join_leave": {}, "force_recovery": None,
                         "unknown_option": {"value": True}},
        }))
        self.assertEqual(options, SubOptions(info=b'{"a":1}', data=b"\x00\x01",
                                             override={"presence": True, "join_leave": False}, expireAt=7))
        self.assertEqual(SubOptions.read(Fields({})), SubOptions())

    def test_payloadsAsBytes(self) -> None:
        """Payloads already encoded (what the API hands on between nodes) are taken as they are."""
        options = SubOptions.read(Fields({"info": b'{"i":1}', "data": b"raw"}))
        self.assertEqual((options.info, options.data), (b'{"i":1}', b"raw"))

    def test_notExpiring(self) -> None:
        """Where the source has no expire_at (a token's subs entry), the field is not read at all."""
        self.assertEqual(SubOptions.read(Fields({"expire_at": "x"}), expiring=False), SubOptions())

    def test_errorsNameTheField(self) -> None:
        cases = [
            ({"override": {"presence": {"value": "yes"}}}, "c.override.presence.value", FieldError),
            ({"override": {"presence": True}}, "c.override.presence", FieldError),
            ({"override": []}, "c.override", FieldError),
            ({"expire_at": 1.5}, "c.expire_at", FieldError),
            ({"expire_at": 2**63}, "c.expire_at", FieldError),
            ({"b64info": "%%"}, "c.b64info", Base64Error),
            ({"data": object()}, "c.data", FieldError),
        ]
        for document, path, kind in cases:
            error = self.assertRaises(kind, SubOptions.read, Fields(document, "c"))
            self.assertEqual(error.path, path, document)
