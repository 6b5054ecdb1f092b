"""
The node: the hub (channel -> subscribers), fan-out of publications through the broker (their encodings shared in
L{frames}), the session registry and the clients of this process, and the client policy it holds.

May import: protocol, config, engines, policy and the interfaces; never a client (a client factory is passed in),
a transport, the web layer or the server API.
"""
