"""
The decisions a client asks for: connection and subscription tokens, namespaces and channel permissions, the
connect/subscribe/publish/refresh/RPC proxies, and recovery from history.

May import: protocol, config, engines (through the interfaces), the node; never a client, transport or the web layer.
"""
