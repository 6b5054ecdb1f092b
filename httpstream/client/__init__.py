"""
One connection's side of the protocol: the L{Client} state machine (commands in, replies and pushes out, ping/pong,
expiry, disconnect; L{client}), its channel commands (L{commands}), the subscriptions it holds (L{subscriptions},
L{subscription}), the writer that queues its encoded frames (L{writer}), the node as the client sees it (L{host}),
and the factory a node makes its clients with (L{factory}). Every decision comes from the node's policy, through
L{httpstream.interfaces.IClientPolicy} and the values of L{httpstream.decisions}.

May import: protocol, config values, the interfaces, L{httpstream.decisions}, logs; never policy, node, engines, a
transport, the web layer or the server API.
"""
