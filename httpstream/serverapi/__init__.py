"""
The server API: typed requests read from HTTP bodies (L{requests}, with L{httpstream.readers}), the methods over the
node and the cluster by concept (L{publishing}: publish, broadcast; L{users}: subscribe, unsubscribe, disconnect,
refresh on a user's connections; L{channels}: presence, history, channels, info, rpc), L{api} which runs them by
name with their L{errors}, and their HTTP resource (L{http}).

May import: node, cluster, policy, protocol, config, readers; never a transport or the web app.
"""
