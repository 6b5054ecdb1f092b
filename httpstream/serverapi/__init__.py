"""
The server API: typed requests read from HTTP bodies, the methods (publish, broadcast, presence, history, ...) over
the node and the cluster, and their HTTP resource.

May import: node, cluster, policy, protocol, config; never a transport or the web app.
"""
