# -*- test-case-name: tests.config.test_config_maps -*-
"""
The channel options of map subscriptions (Centrifugo 6's C{subscription_type} and C{map} object): a base of
L{httpstream.config.channeloptions.ChannelOptions}, so each namespace (and the top level) has them.

Names: v6 nests them as C{map.mode}, C{map.key_ttl}, ... in a namespace (and in C{channel.without_namespace}); the
flat v5 style, which Centrifugo v5 never had for these, writes C{map_mode}, C{map_key_ttl}, ... (the field names);
the environment variables follow (C{CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_MAP_MODE}, C{CENTRIFUGO_MAP_MODE},
C{CENTRIFUGO_CHANNEL_NAMESPACES_<NAME>_MAP_MODE}). C{subscription_type}, the presence prefixes and
C{client_publish_debounce_interval} have one name in both styles. Checked as Centrifugo's C{validate.go} does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from httpstream.config.settings import ConfigError, Duration, listed, optionScopes, setting

__all__ = [
    "MAP_OPTION_PREFIX", "MAP_TYPES", "SUBSCRIPTION_TYPES", "MapChannelOptions", "checkMapOptions", "checkMapProxies",
    "mapV6Name", "subscriptionTypeAllowed",
]

# SubscribeRequest.type of each subscription_type (the SDK's: stream 0, map 1, map_clients 2, map_users 3, shared poll 4).
SUBSCRIPTION_TYPE_NUMBERS = {"": 0, "stream": 0, "map": 1, "map_clients": 2, "map_users": 3, "shared_poll": 4}
SUBSCRIPTION_TYPES = tuple(SUBSCRIPTION_TYPE_NUMBERS)
# The subscription types of map subscriptions, by the SubscribeRequest.type that asks for each.
MAP_TYPES = {number: kind for kind, number in SUBSCRIPTION_TYPE_NUMBERS.items() if kind.startswith("map")}


def subscriptionTypeAllowed(requested: Any, options: Any) -> bool:
    """
    Whether a subscribe of SubscribeRequest C{type} C{requested} fits the channel's C{subscription_type}
    (Centrifugo's C{isSubscriptionTypeAllowed}: otherwise 103): a stream subscribe for a stream channel, a map one
    of the same kind for a map channel, a shared poll one for a shared poll channel.
    """
    return bool(SUBSCRIPTION_TYPE_NUMBERS.get(options.subscription_type) == requested)
MAP_MODES = ("", "ephemeral", "recoverable", "persistent")
CLIENT_KEYS = ("", "client_id", "user_id")
MAP_OPTION_PREFIX = "map_"  # a field map_<x> is v6's map.<x>


def mapV6Name(option: str) -> str:
    """The v6 name of a map field (C{map_key_ttl} -> C{map.key_ttl}); other names are returned as they are."""
    if option.startswith(MAP_OPTION_PREFIX) and not option.endswith("_presence_channel_prefix"):
        return "map." + option[len(MAP_OPTION_PREFIX):]
    return option


@dataclass(frozen=True)
class MapChannelOptions:
    """The map subscription options of a namespace; everything off by default (a stream namespace)."""

    "What a namespace's channels are: stream (the default, also \"\"), map, map_clients, map_users, shared_poll."
    subscription_type: str = setting("", choices=SUBSCRIPTION_TYPES)
    "Map presence: subscribers of a channel C get an entry in map channel <prefix>C (keyed by client or user id)."
    map_clients_presence_channel_prefix: str = setting("")
    map_users_presence_channel_prefix: str = setting("")
    "The SDK debounces sub.publish per key by this much (sent as SubscribeResult.publish_debounce)."
    client_publish_debounce_interval: Duration = setting(0.0, minimum=0)

    "Map channels (v6 map.*): mode ephemeral (no recovery), recoverable or persistent (keys without TTL)."
    map_mode: str = setting("", choices=MAP_MODES)
    map_key_ttl: Duration = setting(0.0, minimum=0)
    map_stream_size: int = setting(0, minimum=0)
    map_stream_ttl: Duration = setting(0.0, minimum=0)
    map_meta_ttl: Duration = setting(0.0, minimum=0)
    map_remove_client_on_unsubscribe: bool = setting(False)
    map_client_key: str = setting("", choices=CLIENT_KEYS)
    map_allow_publish_for_client: bool = setting(False)
    map_allow_publish_for_subscriber: bool = setting(False)
    map_allow_publish_for_anonymous: bool = setting(False)
    map_allow_remove_for_client: bool = setting(False)
    map_allow_remove_for_subscriber: bool = setting(False)
    map_allow_remove_for_anonymous: bool = setting(False)
    "Keys per page of a subscriber's snapshot: asked limits are clamped to [min, max]; 0: 100, 100, 1000."
    map_default_page_size: int = setting(0, minimum=0)
    map_min_page_size: int = setting(0, minimum=0)
    map_max_page_size: int = setting(0, minimum=0)
    map_live_transition_max_publication_limit: int = setting(0, minimum=0)
    map_subscribe_catch_up_timeout: Duration = setting(0.0, minimum=0)
    "A client's map publish (remove) asks the backend first: a proxy of \"proxies\", by name (v6 map.*)."
    map_publish_proxy_enabled: bool = setting(False)
    map_publish_proxy_name: str = setting("")
    map_remove_proxy_enabled: bool = setting(False)
    map_remove_proxy_name: str = setting("")

    @property
    def isMap(self) -> bool:
        """Channels of this namespace are map channels (map, map_clients or map_users)."""
        return self.subscription_type in MAP_TYPES.values()


def checkMapOptions(prefix: str, options: Mapping[str, Any]) -> None:
    """The relations between map options (Centrifugo's validate.go), C{prefix} put before each key named."""

    def key(name: str) -> str:
        return f'"{prefix}{mapV6Name(name)}"'

    mode, kind = options["map_mode"], options["subscription_type"]
    isMap = kind in MAP_TYPES.values()
    if isMap and not mode:
        raise ConfigError(f"config key {key('map_mode')} is required when {key('subscription_type')} is \"{kind}\"")
    if mode in ("ephemeral", "recoverable") and not options["map_key_ttl"]:
        raise ConfigError(f"config key {key('map_key_ttl')} is required when map.mode is \"{mode}\"")
    if mode == "persistent" and options["map_key_ttl"]:
        raise ConfigError(f"config key {key('map_key_ttl')} must not be set when map.mode is \"persistent\" "
                          "(its keys never expire)")
    if mode == "persistent" and kind in ("map_clients", "map_users"):
        raise ConfigError(f"config key {key('map_mode')}: \"persistent\" is not allowed with subscription_type "
                          f"\"{kind}\" (presence entries need a key TTL; use \"ephemeral\" or \"recoverable\")")
    if mode == "ephemeral":
        for name in ("map_stream_size", "map_stream_ttl", "map_meta_ttl"):
            if options[name]:
                raise ConfigError(f"config key {key(name)} must be 0 when map.mode is \"ephemeral\"")
    meta = options["map_meta_ttl"]
    if meta and mode == "persistent":
        raise ConfigError(f"config key {key('map_meta_ttl')} must be 0 when map.mode is \"persistent\" (its keys never "
                          "expire, so neither may the channel)")
    if meta and meta < (options["map_stream_ttl"] or 60.0):
        raise ConfigError(f"config key {key('map_meta_ttl')} ({meta:g}s) must be at least {key('map_stream_ttl')} "
                          f"({options['map_stream_ttl'] or 60.0:g}s)")
    if meta and meta < options["map_key_ttl"]:
        raise ConfigError(f"config key {key('map_meta_ttl')} ({meta:g}s) must be at least {key('map_key_ttl')} "
                          f"({options['map_key_ttl']:g}s)")
    if options["map_remove_client_on_unsubscribe"] and not isMap:
        raise ConfigError(f"config key {key('map_remove_client_on_unsubscribe')} needs a map subscription_type")
    low, high = options["map_min_page_size"], options["map_max_page_size"]
    if low and high and low > high:
        raise ConfigError(f"config keys {key('map_min_page_size')} and {key('map_max_page_size')}: the minimum "
                          f"({low}) is above the maximum ({high})")


def checkMapProxies(config: Any) -> None:
    """
    Refuse at start a map publish (remove) proxy that names no proxy of C{proxies}: httpstream has no unnamed
    default map proxy (Centrifugo's C{channel.proxy.map_publish}), so the name is required.

    @param config: a L{httpstream.config.Config}.
    """
    known = {proxy.name for proxy in config.proxies}
    for prefix, options in optionScopes(config):
        for event in ("publish", "remove"):
            name = getattr(options, f"map_{event}_proxy_name")
            if getattr(options, f"map_{event}_proxy_enabled") and name not in known:
                raise ConfigError(
                    f'config key "{prefix}{mapV6Name(f"map_{event}_proxy_name")}": "{prefix}'
                    f'{mapV6Name(f"map_{event}_proxy_enabled")}" needs a proxy of "proxies" by name; got {name!r} '
                    f"(defined: {listed(known)})"
                )
