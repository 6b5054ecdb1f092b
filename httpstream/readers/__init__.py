# -*- test-case-name: tests.test_readers -*-
"""
Typed readers for JSON from outside: one way to read a decoded JSON object field by field with Go's types
(L{Fields}, each mistake a L{FieldError} naming the field), used by the server API, the proxy results and the token
claims; and the one value those three read subscription options into (L{SubOptions}).

May import: nothing of httpstream (it sits below every layer that reads outside JSON).
"""

from httpstream.readers.fields import INT32, INT64, UINT32, UINT64, Base64Error, FieldError, Fields
from httpstream.readers.suboptions import OVERRIDES, SubOptions, readOverride

__all__ = [
    "INT32",
    "INT64",
    "OVERRIDES",
    "UINT32",
    "UINT64",
    "Base64Error",
    "FieldError",
    "Fields",
    "SubOptions",
    "readOverride",
]
