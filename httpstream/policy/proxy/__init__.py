# -*- test-case-name: tests.policy.test_proxy -*-
"""
Centrifugo's HTTP proxy: client events (connect, refresh, rpc, publish, subscribe, sub_refresh) become JSON POSTs
to the application backend.

The public names are here; behind them, one concept a module: L{client} (L{ProxyClient}, the events: endpoints,
requests, failures), L{caller} (one timed POST with a bounded answer), L{requests} (what a request says and its
JSON body), L{results} (the backend's answers, read with L{httpstream.readers}), L{headers} (which of the
connection's headers ride along) and L{errors}.

May import: protocol, config, readers, logs, L{httpstream.policy.httpbody}; never a client, transport or the web
layer.
"""

from httpstream.policy.proxy.client import PROXY_NAMES, REFRESH_RETRY_DELAY, HTTPPoster, ProxyClient
from httpstream.policy.proxy.errors import ProxyDisconnect, ProxyError
from httpstream.policy.proxy.headers import forwardedHeaders
from httpstream.policy.proxy.requests import ProxyConnectRequest, ProxyContext, ProxySubscribeRequest

__all__ = [
    "PROXY_NAMES",
    "REFRESH_RETRY_DELAY",
    "HTTPPoster",
    "ProxyClient",
    "ProxyConnectRequest",
    "ProxyContext",
    "ProxyDisconnect",
    "ProxyError",
    "ProxySubscribeRequest",
    "forwardedHeaders",
]
