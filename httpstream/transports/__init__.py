"""
Transports: the bytes of each way a client connects — http_stream, SSE, WebSocket, and the /emulation requests
that carry an emulated client's commands — with their framing, CORS and origin checks, and backpressure.

May import: client, node (to make a client and to hand emulation requests over), protocol, config, the interfaces;
never the server API, the web app or the cluster.
"""
