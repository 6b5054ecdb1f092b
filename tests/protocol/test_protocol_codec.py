# -*- test-case-name: tests.protocol.test_protocol_codec -*-
"""
Tests for L{httpstream.protocol.codec}: the exact bytes the official SDKs send
and accept (reference/clients.md), the dict contract shared by both codecs, and
round trips generated from the schema.
"""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from httpstream.protocol import (
    JSON,
    PROTOBUF,
    DecodeError,
    EncodeError,
    FrameTooLarge,
    JSONCodec,
    ProtobufCodec,
    client_pb2,
    decode_emulation,
    varint_delimit,
)
from httpstream.protocol.codec import _pb_message

CONNECT_REPLY = {
    "id": 1,
    "connect": {
        "client": "client-1",
        "version": "0.0.1",
        "ping": 25,
        "pong": True,
        "session": "sess-1",
        "node": "node-1",
    },
}

# POST /emulation, protobuf (reference/clients.md): EmulationRequest{node, session,
# data = varint-delimited Command{id=2, rpc={data, method}}}.
PB_EMULATION_BODY = (
    b"\x0a\x06node-1\x12\x06sess-1\x1a\x1e"
    b"\x1d\x08\x02\x6a\x19\x0a\x11" + b'{"hello":"world"}' + b"\x12\x04echo"
)

JSON_EMULATION_BODY = (
    b'{"session":"sess-1","node":"node-1","data":"{\\"rpc\\":{\\"method\\":\\"echo\\",'
    b'\\"data\\":{\\"hello\\":\\"world\\"}},\\"id\\":2}"}'
)


def pb_command(**fields: Any) -> bytes:
    return client_pb2.Command(**fields).SerializeToString()


class CodecObjectTests(SynchronousTestCase):
    def test_names(self) -> None:
        self.assertIsInstance(JSON, JSONCodec)
        self.assertIsInstance(PROTOBUF, ProtobufCodec)
        self.assertEqual(JSON.name, "json")
        self.assertEqual(PROTOBUF.name, "protobuf")

    def test_error_hierarchy(self) -> None:
        self.assertTrue(issubclass(DecodeError, ValueError))
        self.assertTrue(issubclass(FrameTooLarge, DecodeError))
        self.assertTrue(issubclass(EncodeError, ValueError))
        self.assertFalse(issubclass(EncodeError, DecodeError))


class WireBytesTests(SynchronousTestCase):
    """
    The exact exchanges recorded with the npm `centrifuge` client.
    """

    def test_json_connect(self) -> None:
        self.assertEqual(
            JSON.decode_commands(b'{"connect":{"name":"js"},"id":1}'),
            [{"connect": {"name": "js"}, "id": 1}],
        )

    def test_json_connect_with_options(self) -> None:
        body = (
            b'{"connect":{"token":"TOKEN","data":{"x":1},"name":"test",'
            b'"version":"1.0"},"id":1}'
        )
        self.assertEqual(
            JSON.decode_commands(body),
            [
                {
                    "connect": {
                        "token": "TOKEN",
                        "data": b'{"x":1}',
                        "name": "test",
                        "version": "1.0",
                    },
                    "id": 1,
                }
            ],
        )

    def test_python_sdk_spacing(self) -> None:
        # centrifuge-python uses json.dumps spacing and puts id first.
        self.assertEqual(
            JSON.decode_commands(
                b'{"id": 2, "rpc": {"method": "echo", "data": {"hello": "world"}}}'
            ),
            [{"id": 2, "rpc": {"method": "echo", "data": b'{"hello":"world"}'}}],
        )

    def test_protobuf_connect(self) -> None:
        self.assertEqual(
            PROTOBUF.decode_commands(bytes.fromhex("08 08 01 22 04 22 02 6a 73")),
            [{"id": 1, "connect": {"name": "js"}}],
        )

    def test_json_connect_reply(self) -> None:
        self.assertEqual(
            JSON.encode_reply(CONNECT_REPLY),
            b'{"id":1,"connect":{"client":"client-1","version":"0.0.1","ping":25,'
            b'"pong":true,"session":"sess-1","node":"node-1"}}',
        )

    def test_protobuf_connect_reply(self) -> None:
        expected = (
            b"\x29\x08\x01\x2a\x25\x0a\x08client-1\x12\x050.0.1\x38\x19\x40\x01"
            b"\x4a\x06sess-1\x52\x06node-1"
        )
        self.assertEqual(varint_delimit([PROTOBUF.encode_reply(CONNECT_REPLY)]), expected)

    def test_protobuf_rpc_reply(self) -> None:
        reply = {"id": 2, "rpc": {"data": b'{"hello":"world"}'}}
        self.assertEqual(
            varint_delimit([PROTOBUF.encode_reply(reply)]),
            b"\x17\x08\x02\x6a\x13\x0a\x11" + b'{"hello":"world"}',
        )

    def test_empty_result(self) -> None:
        reply = {"id": 3, "publish": {}}
        self.assertEqual(PROTOBUF.encode_reply(reply), bytes.fromhex("08 03 42 00"))
        self.assertEqual(JSON.encode_reply(reply), b'{"id":3,"publish":{}}')

    def test_ping(self) -> None:
        self.assertEqual(PROTOBUF.encode_reply({}), b"")
        self.assertEqual(varint_delimit([PROTOBUF.encode_reply({})]), b"\x00")
        self.assertEqual(JSON.encode_reply({}), b"{}")

    def test_pong(self) -> None:
        self.assertEqual(JSON.decode_commands(b"{}"), [{}])
        self.assertEqual(PROTOBUF.decode_commands(b"\x00"), [{}])

    def test_error_reply(self) -> None:
        reply = {"id": 2, "error": {"code": 103, "message": "permission denied"}}
        self.assertEqual(
            JSON.encode_reply(reply),
            b'{"id":2,"error":{"code":103,"message":"permission denied"}}',
        )
        self.assertEqual(
            _pb_message(client_pb2.Reply.FromString(PROTOBUF.encode_reply(reply))),
            reply,
        )

    def test_push(self) -> None:
        push = {"push": {"channel": "chat:1", "pub": {"data": b'{"x":1}', "offset": 7}}}
        self.assertEqual(
            JSON.encode_reply(push),
            b'{"push":{"channel":"chat:1","pub":{"data":{"x":1},"offset":7}}}',
        )
        disconnect = {"push": {"disconnect": {"code": 3500, "reason": "invalid token"}}}
        self.assertEqual(
            JSON.encode_reply(disconnect),
            b'{"push":{"disconnect":{"code":3500,"reason":"invalid token"}}}',
        )


class EmulationTests(SynchronousTestCase):
    def test_protobuf_body(self) -> None:
        self.assertEqual(len(PB_EMULATION_BODY), 48)
        node, session, data = decode_emulation(PB_EMULATION_BODY, protobuf=True)
        self.assertEqual((node, session), ("node-1", "sess-1"))
        self.assertEqual(
            PROTOBUF.decode_commands(data),
            [{"id": 2, "rpc": {"data": b'{"hello":"world"}', "method": "echo"}}],
        )

    def test_protobuf_pong(self) -> None:
        body = client_pb2.EmulationRequest(node="n", session="s", data=b"\x00")
        node, session, data = decode_emulation(body.SerializeToString(), True)
        self.assertEqual(PROTOBUF.decode_commands(data), [{}])

    def test_protobuf_bad(self) -> None:
        self.assertRaises(DecodeError, decode_emulation, b"\x0a\x10short", True)

    def test_json_body(self) -> None:
        node, session, data = decode_emulation(JSON_EMULATION_BODY, protobuf=False)
        self.assertEqual((node, session), ("node-1", "sess-1"))
        self.assertEqual(
            data, b'{"rpc":{"method":"echo","data":{"hello":"world"}},"id":2}'
        )
        self.assertEqual(
            JSON.decode_commands(data),
            [{"rpc": {"method": "echo", "data": b'{"hello":"world"}'}, "id": 2}],
        )

    def test_json_batch_and_unicode(self) -> None:
        commands = '{"publish":{"channel":"chat","data":{"text":"hé ✓"}},"id":2}\n{}'
        body = orjson.dumps({"session": "s", "node": "n", "data": commands})
        _, _, data = decode_emulation(body, False)
        self.assertEqual(data, commands.encode("utf-8"))
        self.assertEqual(len(JSON.decode_commands(data)), 2)

    def test_json_missing_node_session(self) -> None:
        self.assertEqual(decode_emulation(b'{"data":"{}"}', False), ("", "", b"{}"))
        self.assertEqual(
            decode_emulation(b'{"node":null,"session":null,"data":"{}"}', False),
            ("", "", b"{}"),
        )

    def test_json_bad(self) -> None:
        for body in [
            b"",
            b"{",
            b"[]",
            b'"x"',
            b'{"session":1,"node":"n","data":"{}"}',
            b'{"session":"s","node":["n"],"data":"{}"}',
            b'{"session":"s","node":"n","data":{"rpc":{}}}',
            b'{"session":"s","node":"n"}',
            b'{"session":"s","node":"n","data":null}',
        ]:
            self.assertRaises(DecodeError, decode_emulation, body, False)


class JSONFramingTests(SynchronousTestCase):
    def test_empty_body(self) -> None:
        self.assertEqual(JSON.decode_commands(b""), [])

    def test_several(self) -> None:
        self.assertEqual(
            JSON.decode_commands(b'{"id":1,"ping":{}}\n{}\n{"send":{"data":1}}'),
            [{"id": 1, "ping": {}}, {}, {"send": {"data": b"1"}}],
        )

    def test_one_trailing_newline(self) -> None:
        self.assertEqual(JSON.decode_commands(b"{}\n"), [{}])
        self.assertEqual(JSON.decode_commands(b'{}\n{"id":1}\n'), [{}, {"id": 1}])

    def test_blank_lines(self) -> None:
        for body in [b"\n", b"{}\n\n", b"{}\n\n{}", b"\n{}", b"\n\n"]:
            e = self.assertRaises(DecodeError, JSON.decode_commands, body)
            self.assertNotIsInstance(e, FrameTooLarge)

    def test_crlf_is_not_a_separator(self) -> None:
        # "\r" is JSON whitespace; the line still parses.
        self.assertEqual(JSON.decode_commands(b"{}\r\n{}"), [{}, {}])

    def test_size_limit(self) -> None:
        command = b'{"id":1,"rpc":{"data":"' + b"x" * 50 + b'"}}'
        size = len(command)
        self.assertEqual(len(JSON.decode_commands(command, max_size=size)), 1)
        self.assertRaises(FrameTooLarge, JSON.decode_commands, command, size - 1)
        # The limit is per line, not per frame; the trailing "\n" does not count.
        body = command + b"\n" + command + b"\n"
        self.assertEqual(len(JSON.decode_commands(body, max_size=size)), 2)
        self.assertRaises(FrameTooLarge, JSON.decode_commands, b"{}\n" + command, size - 1)

    def test_default_limit(self) -> None:
        big = b'{"send":{"data":"' + b"x" * 65536 + b'"}}'
        self.assertRaises(FrameTooLarge, JSON.decode_commands, big)


class JSONDecodeTests(SynchronousTestCase):
    def decode(self, body: bytes) -> dict[str, Any]:
        [command] = JSON.decode_commands(body)
        return command

    def test_raw_json_data_preserved(self) -> None:
        for raw in [
            b'{"a":{"b":[1,2,{"c":null}]},"d":"e"}',
            b'"just a string"',
            b"42",
            b"-1.5",
            b"[1,\"two\",3.25,false,null]",
            b"true",
            b'{"text":"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80"}',
            b'""',
            b"0",
            b"{}",
            b"[]",
        ]:
            command = self.decode(b'{"id":1,"publish":{"channel":"c","data":' + raw + b"}}")
            self.assertEqual(command["publish"]["data"], raw)
            self.assertIsInstance(command["publish"]["data"], bytes)

    def test_raw_json_is_normalised(self) -> None:
        # Whitespace and escapes are normalised by the round through orjson; the
        # value is the same.
        command = self.decode(b'{"send":{"data":{ "a" : "\\u00e9" ,\r\t "b":[ 1 ]}}}')
        self.assertEqual(command["send"]["data"], '{"a":"é","b":[1]}'.encode())

    def test_unknown_keys_ignored(self) -> None:
        command = self.decode(
            b'{"subscribe":{"channel":"chat","flag":1,"tf":{"op":"and"},"future":[1]},'
            b'"id":4,"method":7,"whatever":{"x":1}}'
        )
        self.assertEqual(command, {"subscribe": {"channel": "chat", "flag": 1, "tf": {"op": "and"}}, "id": 4})

    def test_zero_and_null_values_dropped(self) -> None:
        command = self.decode(
            b'{"id":0,"subscribe":{"channel":"c","token":"","recover":false,"offset":0,'
            b'"epoch":null,"data":null,"delta":""},"connect":null}'
        )
        self.assertEqual(command, {"subscribe": {"channel": "c"}})

    def test_empty_containers_dropped(self) -> None:
        command = self.decode(b'{"connect":{"subs":{},"headers":{}},"id":1}')
        self.assertEqual(command, {"connect": {}, "id": 1})

    def test_maps(self) -> None:
        command = self.decode(
            b'{"connect":{"headers":{"X-A":"1","Empty":""},'
            b'"subs":{"news":{"recover":true,"offset":12,"epoch":"e"},"other":{}}},"id":1}'
        )
        self.assertEqual(
            command["connect"],
            {
                "headers": {"X-A": "1", "Empty": ""},
                "subs": {
                    "news": {"recover": True, "offset": 12, "epoch": "e"},
                    "other": {},
                },
            },
        )

    def test_64_bit(self) -> None:
        self.assertEqual(
            self.decode(b'{"subscribe":{"offset":18446744073709551615,"flag":-3}}'),
            {"subscribe": {"offset": 2**64 - 1, "flag": -3}},
        )
        # proto3 JSON writes 64-bit integers as strings: accept that too.
        self.assertEqual(
            self.decode(b'{"subscribe":{"offset":"123","flag":"-9223372036854775808"}}'),
            {"subscribe": {"offset": 123, "flag": -(2**63)}},
        )
        self.assertEqual(self.decode(b'{"subscribe":{"offset":"0"}}'), {"subscribe": {}})

    def test_type_mismatches(self) -> None:
        cases = {
            b'{"id":"1"}': "id",
            b'{"id":true}': "id",
            b'{"id":1.0}': "id",
            b'{"id":-1}': "id",
            b'{"id":4294967296}': "id",
            b'{"connect":[]}': "connect",
            b'{"connect":"x"}': "connect",
            b'{"connect":{"name":1}}': "connect.name",
            b'{"connect":{"headers":[]}}': "connect.headers",
            b'{"connect":{"headers":{"a":1}}}': "connect.headers.a",
            b'{"connect":{"headers":{"a":null}}}': "connect.headers.a",
            b'{"connect":{"subs":{"ch":{"recover":1}}}}': "connect.subs.ch.recover",
            b'{"connect":{"subs":{"ch":null}}}': "connect.subs.ch",
            b'{"subscribe":{"recover":"true"}}': "subscribe.recover",
            b'{"subscribe":{"offset":-1}}': "subscribe.offset",
            b'{"subscribe":{"offset":18446744073709551616}}': "subscribe.offset",
            b'{"subscribe":{"offset":"1.5"}}': "subscribe.offset",
            b'{"subscribe":{"offset":" 1"}}': "subscribe.offset",
            b'{"subscribe":{"offset":"18446744073709551616"}}': "subscribe.offset",
            b'{"history":{"limit":"10"}}': "history.limit",
            b'{"history":{"limit":2147483648}}': "history.limit",
            b'{"history":{"since":{"offset":"x"}}}': "history.since.offset",
            b'{"rpc":{"method":["echo"]}}': "rpc.method",
        }
        for body, path in cases.items():
            e = self.assertRaises(DecodeError, JSON.decode_commands, body)
            self.assertTrue(str(e).startswith(path + ":"), (body, str(e)))

    def test_not_a_command(self) -> None:
        for body in [b"[]", b"1", b'"connect"', b"null", b"{", b"{}}", b"\xff", b"{} {}"]:
            self.assertRaises(DecodeError, JSON.decode_commands, body)

    def test_error_is_on_the_bad_line(self) -> None:
        self.assertRaises(DecodeError, JSON.decode_commands, b'{"id":1}\n{"id":"x"}')

    def test_commands_before_the_bad_line(self) -> None:
        error = self.assertRaises(DecodeError, JSON.decode_commands, b'{"id":1}\n{"id":2}\n{"id":"x"}\n{"id":3}')
        self.assertEqual(error.commands, [{"id": 1}, {"id": 2}])
        self.assertEqual(self.assertRaises(DecodeError, JSON.decode_commands, b'{"id":"x"}').commands, [])
        self.assertEqual(self.assertRaises(DecodeError, JSON.decode_commands, b'{"id":1}\n\n').commands,
                         [{"id": 1}])


class ProtobufDecodeTests(SynchronousTestCase):
    def test_garbage(self) -> None:
        # A length-delimited message whose body is not a valid Command.
        self.assertRaises(DecodeError, PROTOBUF.decode_commands, b"\x02\x0a\x05")
        self.assertRaises(DecodeError, PROTOBUF.decode_commands, b"\x02\xff\xff")

    def test_invalid_utf8_string(self) -> None:
        bad = b"\x22\x04\x22\x02\xff\xfe"  # connect.name = b"\xff\xfe"
        self.assertRaises(DecodeError, PROTOBUF.decode_commands, varint_delimit([bad]))

    def test_truncated(self) -> None:
        body = varint_delimit([pb_command(id=1, ping={})])
        self.assertRaises(DecodeError, PROTOBUF.decode_commands, body[:-1])

    def test_empty_body(self) -> None:
        self.assertEqual(PROTOBUF.decode_commands(b""), [])

    def test_commands_before_the_bad_message(self) -> None:
        good = varint_delimit([pb_command(id=1, ping={}), pb_command(id=2)])
        for bad in [b"\x80", b"\x05\x08", b"\xff" * 11, b"\x02\xff\xff"]:
            error = self.assertRaises(DecodeError, PROTOBUF.decode_commands, good + bad)
            self.assertEqual(error.commands, [{"id": 1, "ping": {}}, {"id": 2}], bad)
        self.assertEqual(self.assertRaises(DecodeError, PROTOBUF.decode_commands, b"\x80").commands, [])

    def test_size_limit(self) -> None:
        command = pb_command(id=1, send={"data": b"x" * 100})
        body = varint_delimit([command, command])
        self.assertEqual(len(PROTOBUF.decode_commands(body, len(command))), 2)
        self.assertRaises(FrameTooLarge, PROTOBUF.decode_commands, body, len(command) - 1)

    def test_unknown_fields_tolerated(self) -> None:
        # SubscribeRequest field 30 (length-delimited) is in no schema: a newer SDK's field.
        subscribe = client_pb2.SubscribeRequest(channel="c", flag=1).SerializeToString()
        subscribe += b"\xf2\x01\x03\x0a\x01a"
        command = b"\x08\x04\x2a" + bytes([len(subscribe)]) + subscribe
        self.assertEqual(
            PROTOBUF.decode_commands(varint_delimit([command])),
            [{"id": 4, "subscribe": {"channel": "c", "flag": 1}}],
        )

    def test_bytes_kept_as_is(self) -> None:
        body = varint_delimit([pb_command(id=1, rpc={"data": b"\x00\xffbinary"})])
        self.assertEqual(
            PROTOBUF.decode_commands(body),
            [{"id": 1, "rpc": {"data": b"\x00\xffbinary"}}],
        )

    def test_types(self) -> None:
        [command] = PROTOBUF.decode_commands(
            varint_delimit([pb_command(id=7, subscribe={"offset": 2**64 - 1, "flag": -3})])
        )
        self.assertEqual(command, {"id": 7, "subscribe": {"offset": 2**64 - 1, "flag": -3}})
        self.assertIs(type(command), dict)
        self.assertIs(type(command["subscribe"]), dict)


class AgreementTests(SynchronousTestCase):
    """
    The same command from a JSON and a protobuf client gives the same dict.
    """

    def check(self, json_text: bytes, pb_fields: dict[str, Any]) -> None:
        [from_json] = JSON.decode_commands(json_text)
        [from_pb] = PROTOBUF.decode_commands(varint_delimit([pb_command(**pb_fields)]))
        self.assertEqual(from_json, from_pb)

    def test_commands(self) -> None:
        self.check(b'{"connect":{"name":"js"},"id":1}', {"id": 1, "connect": {"name": "js"}})
        self.check(
            b'{"connect":{"token":"T","data":{"x":1},"subs":{"a":{"recover":true,'
            b'"offset":5,"epoch":"e"}},"headers":{"h":"v"},"flag":0},"id":1}',
            {
                "id": 1,
                "connect": {
                    "token": "T",
                    "data": b'{"x":1}',
                    "subs": {"a": {"recover": True, "offset": 5, "epoch": "e"}},
                    "headers": {"h": "v"},
                },
            },
        )
        self.check(
            b'{"subscribe":{"channel":"chat","flag":1,"recoverable":false},"id":4}',
            {"id": 4, "subscribe": {"channel": "chat", "flag": 1}},
        )
        self.check(
            b'{"publish":{"channel":"chat","data":{"text":"hi"}},"id":2}',
            {"id": 2, "publish": {"channel": "chat", "data": b'{"text":"hi"}'}},
        )
        self.check(
            b'{"history":{"channel":"c","limit":-1,"since":{"offset":3,"epoch":"x"},'
            b'"reverse":true},"id":9}',
            {
                "id": 9,
                "history": {
                    "channel": "c",
                    "limit": -1,
                    "since": {"offset": 3, "epoch": "x"},
                    "reverse": True,
                },
            },
        )
        self.check(b'{"history":{"channel":"c","since":{}},"id":9}',
                   {"id": 9, "history": {"channel": "c", "since": {}}})
        self.check(b'{"unsubscribe":{},"id":5}', {"id": 5, "unsubscribe": {}})
        self.check(b'{"send":{"data":"x"}}', {"send": {"data": b'"x"'}})
        self.check(b"{}", {})
        self.check(
            b'{"sub_refresh":{"channel":"c","token":"t"},"refresh":{"token":"u"},"id":3}',
            {"id": 3, "sub_refresh": {"channel": "c", "token": "t"}, "refresh": {"token": "u"}},
        )


class JSONEncodeTests(SynchronousTestCase):
    def test_key_order_is_insertion_order(self) -> None:
        self.assertEqual(
            JSON.encode_reply({"id": 1, "rpc": {"data": b"1"}}), b'{"id":1,"rpc":{"data":1}}'
        )
        self.assertEqual(
            JSON.encode_reply({"rpc": {"data": b"1"}, "id": 1}), b'{"rpc":{"data":1},"id":1}'
        )

    def test_raw_json_embedded(self) -> None:
        for raw in [b'{"a":[1,2]}', b'"s"', b"3.5", b"[]", b"null", '"é✓"'.encode()]:
            self.assertEqual(
                JSON.encode_reply({"id": 1, "rpc": {"data": raw}}),
                b'{"id":1,"rpc":{"data":' + raw + b"}}",
            )

    def test_newlines_stripped(self) -> None:
        raw = b'{\n  "a": [\n    1,\n    2\n  ]\n}\n'
        out = JSON.encode_reply({"push": {"channel": "c", "pub": {"data": raw}}})
        self.assertNotIn(b"\n", out)
        self.assertEqual(out, b'{"push":{"channel":"c","pub":{"data":{  "a": [    1,    2  ]}}}}')
        self.assertEqual(orjson.loads(out)["push"]["pub"]["data"], {"a": [1, 2]})

    def test_nested_bytes_everywhere(self) -> None:
        reply = {
            "id": 1,
            "presence": {
                "presence": {
                    "c1": {"user": "u", "client": "c1", "conn_info": b'{"n":1}', "chan_info": b"[2]"}
                }
            },
        }
        self.assertEqual(
            JSON.encode_reply(reply),
            b'{"id":1,"presence":{"presence":{"c1":{"user":"u","client":"c1",'
            b'"conn_info":{"n":1},"chan_info":[2]}}}}',
        )
        history = {"id": 2, "history": {"publications": [{"data": b"1", "offset": 1}], "epoch": "e", "offset": 1}}
        self.assertEqual(
            JSON.encode_reply(history),
            b'{"id":2,"history":{"publications":[{"data":1,"offset":1}],"epoch":"e","offset":1}}',
        )

    def test_invalid_json_bytes(self) -> None:
        for raw in [b"\x00\xffbinary", b"", b"{", b"hello", b"\xff", b"1 2"]:
            e = self.assertRaises(
                EncodeError, JSON.encode_reply, {"push": {"pub": {"data": raw}}}
            )
            self.assertIn("not valid JSON", str(e))

    def test_unencodable(self) -> None:
        self.assertRaises(EncodeError, JSON.encode_reply, {"id": object()})
        self.assertRaises(EncodeError, JSON.encode_reply, {"offset": 2**70})

    def test_empty_containers(self) -> None:
        self.assertEqual(
            JSON.encode_reply({"id": 1, "presence": {"presence": {}}}),
            b'{"id":1,"presence":{"presence":{}}}',
        )
        self.assertEqual(
            JSON.encode_reply({"id": 1, "history": {"publications": [], "epoch": "", "offset": 0}}),
            b'{"id":1,"history":{"publications":[],"epoch":"","offset":0}}',
        )


class ProtobufEncodeTests(SynchronousTestCase):
    def round_trip(self, reply: dict[str, Any]) -> dict[str, Any]:
        return _pb_message(client_pb2.Reply.FromString(PROTOBUF.encode_reply(reply)))

    def test_empty_submessages_present(self) -> None:
        self.assertEqual(PROTOBUF.encode_reply({"id": 5, "unsubscribe": {}}), b"\x08\x05\x3a\x00")
        self.assertEqual(
            self.round_trip({"id": 1, "subscribe": {"publications": [{}]}}),
            {"id": 1, "subscribe": {"publications": [{}]}},
        )
        self.assertEqual(
            self.round_trip({"id": 1, "connect": {"subs": {"c": {}}}}),
            {"id": 1, "connect": {"subs": {"c": {}}}},
        )

    def test_zero_values_vanish(self) -> None:
        self.assertEqual(
            self.round_trip(
                {"id": 1, "history": {"publications": [], "epoch": "", "offset": 0}}
            ),
            {"id": 1, "history": {}},
        )

    def test_binary_payload(self) -> None:
        reply = {"push": {"channel": "c", "pub": {"data": b"\x00\xff", "tags": {"k": "v"}}}}
        self.assertEqual(self.round_trip(reply), reply)

    def test_bad_replies(self) -> None:
        for reply in [
            {"bogus": 1},
            {"id": "1"},
            {"id": -1},
            {"push": {"pub": {"data": "not bytes"}}},
            {"push": []},
            {"connect": {"subs": {"c": {"nope": 1}}}},
        ]:
            self.assertRaises(EncodeError, PROTOBUF.encode_reply, reply)


# ---------------------------------------------------------------------------
# Property tests: dicts generated from the schema survive both codecs.

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
# Canonical orjson text, so that decoding gives back exactly these bytes; a bare
# null means "absent" to the JSON decoder, so it is left out.
_raw_json = _json_values.filter(lambda v: v is not None).map(orjson.dumps)

_INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}


def _value(fd: FieldDescriptor, depth: int, nonzero: bool) -> st.SearchStrategy[Any]:
    cpp = fd.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_MESSAGE:
        return _message(fd.message_type, depth + 1)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return _raw_json
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        return st.text(min_size=1 if nonzero else 0, max_size=10)
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return st.just(True) if nonzero else st.booleans()
    lo, hi = _INT_RANGES[cpp]
    ints = st.integers(min_value=lo, max_value=hi)
    return ints.filter(bool) if nonzero else ints


def _message(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """
    Normalised dicts for a message type: zero values left out, as decoders do.
    """
    if depth > 3:
        return st.just({})
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for fd in descriptor.fields:
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            strategy: st.SearchStrategy[Any] = st.dictionaries(
                st.text(max_size=6), _value(value_fd, depth, False), min_size=1, max_size=2
            )
        elif fd.is_repeated:
            strategy = st.lists(_value(fd, depth, True), min_size=1, max_size=2)
        else:
            strategy = _value(fd, depth, True)
        fields[fd.name] = strategy
    return st.fixed_dictionaries({}, optional=fields)


_commands = _message(client_pb2.Command.DESCRIPTOR)
_replies = _message(client_pb2.Reply.DESCRIPTOR)


def _unraw(value: Any) -> Any:
    """
    What a JSON reader sees: raw JSON bytes parsed in place.
    """
    if isinstance(value, dict):
        return {k: _unraw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unraw(v) for v in value]
    if isinstance(value, bytes):
        return orjson.loads(value)
    return value


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(_commands, max_size=3))
def test_commands_round_trip(commands: list[dict[str, Any]]) -> None:
    """
    Commands written by a JSON or a protobuf client decode to the same dicts.
    """
    json_body = b"\n".join(JSON.encode_reply(c) for c in commands)
    pb_body = varint_delimit(client_pb2.Command(**c).SerializeToString() for c in commands)
    assert JSON.decode_commands(json_body, max_size=2**20) == commands
    assert PROTOBUF.decode_commands(pb_body, max_size=2**20) == commands


@settings(max_examples=300, deadline=None, database=None)
@given(_replies)
def test_replies_round_trip(reply: dict[str, Any]) -> None:
    """
    Replies encode in both protocols to what a client would read back.
    """
    encoded = PROTOBUF.encode_reply(reply)
    assert _pb_message(client_pb2.Reply.FromString(encoded)) == reply
    text = JSON.encode_reply(reply)
    assert b"\n" not in text
    assert orjson.loads(text) == _unraw(reply)
