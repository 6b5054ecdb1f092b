"""
Many nodes as one: node announcements, requests and surveys between nodes, and forwarding of emulation requests to
the node that holds the session, over a control channel (Redis PUB/SUB, or in memory for tests).

May import: protocol, the interfaces and the engines' connections; never a transport or the web layer.
"""
