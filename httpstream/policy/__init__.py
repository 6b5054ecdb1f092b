"""
The decisions a client asks for (L{httpstream.interfaces.IClientPolicy}, values in L{httpstream.decisions}):
L{clientpolicy.ConfiguredPolicy} decides from the configuration (L{connecting}: connection tokens, the connect and
refresh proxies, anonymous access; L{subscribing}: subscription tokens, the subscribe and sub refresh proxies,
namespace permissions; the publish proxy, presence and history permissions, RPC through L{rpc} and the proxy,
recovery from history in L{recovery}); L{application.ApplicationPolicy} puts an embedding program's callables in
front of it. L{tokens}, L{channels}, L{proxy} and L{rpc} are the pieces it is built from.

May import: protocol, config, L{httpstream.decisions}, the interfaces, engines values; never a client, the node
(what it reads of the node is the structural type L{host.PolicyHost}), a transport or the web layer.
"""
