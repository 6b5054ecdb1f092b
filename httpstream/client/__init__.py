"""
One connection's side of the protocol: the L{Client} state machine (commands in, replies and pushes out, ping/pong,
expiry, disconnect), the subscriptions it holds and the writer that queues its encoded frames.

May import: protocol, the interfaces and typed values; never a transport, the web layer or the server API.
"""
