# -*- test-case-name: tests.serverapi.test_api -*-
"""
The server API's errors (Centrifugo's C{apiproto} C{errors.go}): what a method fails with, and how a failure from
below (a channel rule, the proxy, history) becomes one.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.python.failure import Failure

from httpstream.engines import HistoryError
from httpstream.policy.channels import ChannelError
from httpstream.policy.proxy import ProxyError
from httpstream.protocol import codes
from httpstream.readers import FieldError

__all__ = [
    "ERROR_BAD_REQUEST",
    "ERROR_INTERNAL",
    "ERROR_METHOD_NOT_FOUND",
    "ERROR_NOT_AVAILABLE",
    "ERROR_UNKNOWN_CHANNEL",
    "ERROR_UNRECOVERABLE_POSITION",
    "APIError",
    "BadRequest",
    "ServerFault",
    "errorOf",
    "reply",
    "translated",
]

# The API's 100 is not marked temporary, unlike the client protocol's.
ERROR_INTERNAL = codes.Error(100, "internal server error")
ERROR_UNKNOWN_CHANNEL = codes.ERROR_UNKNOWN_CHANNEL
ERROR_METHOD_NOT_FOUND = codes.ERROR_METHOD_NOT_FOUND
ERROR_BAD_REQUEST = codes.ERROR_BAD_REQUEST
ERROR_NOT_AVAILABLE = codes.ERROR_NOT_AVAILABLE
ERROR_UNRECOVERABLE_POSITION = codes.ERROR_UNRECOVERABLE_POSITION


class APIError(Exception):
    """An API call that answers C{{"error": {"code", "message"}}}."""

    def __init__(self, error: codes.Error) -> None:
        super().__init__(error.message)
        self.error = error


class BadRequest(APIError):
    """
    A request that does not decode: error 107 "bad request" (Centrifugo answers a body its C{json.Unmarshal}
    refuses with HTTP 400; here the method's 107 names the mistake as for any other bad field).

    @ivar field: the L{FieldError} naming the field.
    """

    def __init__(self, field: FieldError) -> None:
        super().__init__(ERROR_BAD_REQUEST)
        self.field = field


class ServerFault(Exception):
    """A server-side failure told by its message (no traceback to show): error 100."""


def errorOf(failure: Failure) -> codes.Error:
    """The error a failed call answers: its own, or 100 for anything that is not an L{APIError}."""
    if isinstance(failure.value, APIError):
        return failure.value.error
    return ERROR_INTERNAL


def translated(failure: Failure) -> Optional[APIError]:
    """The L{APIError} of a protocol-level failure (with Centrifugo's API codes); None for a server fault."""
    value = failure.value
    if isinstance(value, APIError):
        return value
    if isinstance(value, (ChannelError, ProxyError)):
        return APIError(value.error)
    if isinstance(value, HistoryError):
        return APIError(ERROR_UNRECOVERABLE_POSITION if value.error.code == ERROR_UNRECOVERABLE_POSITION.code else ERROR_BAD_REQUEST)
    return None


def reply(ok: bool, value: Any) -> dict[str, Any]:
    """One entry of a broadcast's C{responses}: C{{"result": ..}} or C{{"error": ..}}."""
    if ok:
        return {"result": value}
    return {"error": errorOf(value).toDict()}
