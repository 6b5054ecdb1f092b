"""
The node: the hub (channel -> subscribers), fan-out of publications through the broker, the session registry and
the clients of this process.

May import: protocol, config, engines and the interfaces; never a transport, the web layer or the server API.
"""
