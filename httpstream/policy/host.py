"""
What the configured client policy reads of its node: the configuration, the clock, the token verifier, channel
rules, proxy and in-process RPC registry the node holds (and replaces on reload), and the engines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from twisted.internet.interfaces import IReactorTime

if TYPE_CHECKING:
    from httpstream.config import Config
    from httpstream.interfaces import IBroker, IPresenceManager
    from httpstream.policy.channels import ChannelRules
    from httpstream.policy.proxy import ProxyClient
    from httpstream.policy.rpc import RPCRegistry
    from httpstream.policy.tokens import TokenVerifier


class PolicyHost(Protocol):
    """The node, as L{httpstream.policy.clientpolicy.ConfiguredPolicy} uses it (read on every decision)."""

    @property
    def config(self) -> Config: ...

    @property
    def reactor(self) -> IReactorTime: ...

    @property
    def tokens(self) -> TokenVerifier: ...

    @property
    def rules(self) -> ChannelRules: ...

    @property
    def proxy(self) -> ProxyClient: ...

    @property
    def rpc(self) -> RPCRegistry: ...

    @property
    def broker(self) -> IBroker: ...

    @property
    def presence(self) -> IPresenceManager: ...

    def userConnections(self, user: str) -> int: ...
