# -*- test-case-name: tests.engines.test_engine_redis -*-
"""The ways a Redis call fails: both are outages for the caller (error 100, one log line, no traceback)."""

from __future__ import annotations

import txredisapi
from twisted.python.failure import Failure

from httpstream.engines import EngineUnavailable

__all__ = ["RedisReplyError", "RedisUnavailable", "asReplyError"]


# txredisapi has no type hints: its ConnectionError is Any to mypy. Subclassing it keeps the errbacks that trap
# txredisapi's own lost-connection error working on ours.
class RedisUnavailable(txredisapi.ConnectionError, EngineUnavailable):  # type: ignore[misc]
    """
    The connection a call needs is down (Redis unreachable, restarting, refusing our credentials), or was lost
    before the reply came.
    """


class RedisReplyError(EngineUnavailable):
    """
    Redis answered with an error, or with what this engine never writes (a value of another shape under its keys,
    another program's message on its channels): the call fails as in an outage (the client gets error 100, the
    log one line without a traceback), never with a traceback into the client.
    """


def asReplyError(failure: Failure) -> Failure:
    """An error reply to (S)SUBSCRIBE (an ACL without the channel, MOVED) as the engine's L{RedisReplyError}."""
    if failure.check(txredisapi.ResponseError):
        raise RedisReplyError(f"Redis error reply: {failure.getErrorMessage()}")
    return failure
