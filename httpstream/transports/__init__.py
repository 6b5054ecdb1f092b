"""
Transports: the bytes of each way a client connects — http_stream, SSE, WebSocket, the /emulation requests
that carry an emulated client's commands, and the unidirectional uni_http_stream, uni_sse and uni_websocket —
with their framing, CORS and origin checks, and backpressure.

May import: client, node (to make a client and to hand emulation requests over), protocol, config, the interfaces;
never the server API, the web app or the cluster.
"""
