# -*- test-case-name: tests.test_readers -*-
"""
A decoded JSON object from outside (an API request body, a proxy response, a token's claims) read field by field.

A L{Fields} reads one decoded JSON object field by field, with the types of the Go structs Centrifugo decodes the
same documents into: a field that is absent or JSON C{null} takes its zero value (as Go's C{encoding/json}
leaves it), a field of another type or out of its integer range raises L{FieldError} naming the field by its
path (C{disconnect.code}, C{tags.k}), so that every caller answers a bad document one way, never by a Python
exception escaping into Twisted.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Iterator, Mapping, Optional, Union

import orjson

__all__ = [
    "INT32",
    "INT64",
    "UINT32",
    "UINT64",
    "Base64Error",
    "FieldError",
    "Fields",
]

# Integer ranges of the Go (protobuf) field types.
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)

# A field path in a message is cut here: keys of maps come from outside and may be of any length.
_PATH_MAX = 64


class FieldError(ValueError):
    """
    A field of the wrong type, shape or range.

    @ivar path: where it is, dotted from the document's top (C{""} for the document itself), cut to a sane length.
    @ivar expected: what it should have been (C{"a string"}, C{"an integer in [0, 4294967295]"}).
    """

    def __init__(self, path: str, expected: str) -> None:
        path = path if len(path) <= _PATH_MAX else path[:_PATH_MAX] + "..."
        super().__init__(f"{path or 'document'}: expected {expected}")
        self.path = path
        self.expected = expected


class Base64Error(FieldError):
    """A C{b64...} field that is a string but not standard base64."""


def _isInt(value: Any) -> bool:
    return type(value) is int  # bool is an int subclass, and JSON true is no integer


class Fields:
    """
    One JSON object (a C{dict} as C{orjson} or C{json} decode it) read field by field.

    @ivar path: the object's own path in its document (C{""} at the top).
    """

    __slots__ = ("_object", "path")

    def __init__(self, value: Any, path: str = "") -> None:
        """@raise FieldError: C{value} is not an object."""
        if type(value) is not dict:
            raise FieldError(path, "an object")
        self._object: Mapping[str, Any] = value
        self.path = path

    def name(self, key: str) -> str:
        """The path of field C{key}."""
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str) -> Any:
        """The field's value as decoded (None when absent or null)."""
        return self._object.get(key)

    def keys(self) -> Iterator[str]:
        return iter(self._object)

    def __len__(self) -> int:
        return len(self._object)

    def string(self, key: str, default: str = "") -> str:
        value = self._object.get(key)
        if value is None:
            return default
        if type(value) is not str:
            raise FieldError(self.name(key), "a string")
        return value

    def integer(self, key: str, bounds: tuple[int, int] = INT64, default: int = 0) -> int:
        """An integer (a JSON number without fraction or exponent, as Go's integer fields take) within C{bounds}."""
        value = self._object.get(key)
        if value is None:
            return default
        low, high = bounds
        if not _isInt(value) or not low <= value <= high:
            raise FieldError(self.name(key), f"an integer in [{low}, {high}]")
        return int(value)

    def number(self, key: str) -> Optional[Union[int, float]]:
        """Any JSON number, as Go's C{float64} and a JWT's NumericDate take (None when absent or null)."""
        value = self._object.get(key)
        if value is None:
            return None
        if type(value) not in (int, float):
            raise FieldError(self.name(key), "a number")
        return value  # type: ignore[no-any-return]

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self._object.get(key)
        if value is None:
            return default
        if type(value) is not bool:
            raise FieldError(self.name(key), "a boolean")
        return value

    def strings(self, key: str) -> list[str]:
        """A list of strings (C{[]} when absent)."""
        value = self._object.get(key)
        if value is None:
            return []
        if type(value) is not list or not all(type(item) is str for item in value):
            raise FieldError(self.name(key), "a list of strings")
        return value

    def stringMap(self, key: str) -> dict[str, str]:
        """An object of string values (C{{}} when absent)."""
        value = self._object.get(key)
        if value is None:
            return {}
        if type(value) is not dict:
            raise FieldError(self.name(key), "an object of strings")
        for name, item in value.items():
            if type(item) is not str:
                raise FieldError(f"{self.name(key)}.{name}", "a string")
        return value

    def list(self, key: str) -> Optional[list[Any]]:
        """A list of any values (None when absent)."""
        value = self._object.get(key)
        if value is None:
            return None
        if type(value) is not list:
            raise FieldError(self.name(key), "a list")
        return value

    def object(self, key: str) -> Optional["Fields"]:
        """A nested object (None when absent)."""
        value = self._object.get(key)
        if value is None:
            return None
        return Fields(value, self.name(key))

    def raw(self, key: str) -> Optional[bytes]:
        """
        A field holding embedded JSON (Centrifugo's C{Raw}: C{data}, C{info}, C{params}), as compact JSON bytes;
        None when absent or null. C{bytes} are taken as already encoded (what the HTTP API hands on, and what a
        program calling the API directly passes).
        """
        value = self._object.get(key)
        if value is None:
            return None
        if type(value) is bytes:
            return value
        try:
            return orjson.dumps(value)
        except TypeError:
            raise FieldError(self.name(key), "JSON") from None

    def payload(self, key: str) -> Optional[bytes]:
        """
        C{b64<key>} decoded when it is a non-empty string, else L{raw}(C{key}): Centrifugo's pairs of payload
        fields (C{data}/C{b64data}, C{info}/C{b64info}).

        @raise Base64Error: C{b64<key>} is a string but not standard base64.
        """
        encoded = self.string("b64" + key)
        if encoded:
            try:
                return base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise Base64Error(self.name("b64" + key), "base64") from None
        return self.raw(key)
