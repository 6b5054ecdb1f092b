# -*- test-case-name: tests.config.test_config_sharedpoll -*-
"""
Shared poll channels (Centrifugo 6.8's C{subscription_type: "shared_poll"}): a namespace's C{shared_poll_*} options
as one typed value with Centrifugo's defaults in place (L{SharedPollOptions}), and the start-up checks (the HMAC
secret of track signatures, the backend's named proxy).

v5 has no shared poll: its flat names (C{shared_poll_refresh_interval}) are httpstream's; v6 nests them in the
namespace's C{shared_poll} object and the secrets in the top-level C{shared_poll} one.

Imports only L{httpstream.config.settings}; L{httpstream.config.options} runs L{checkSharedPoll} on every L{Config}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from httpstream.config.settings import ConfigError, _show, listed, optionScopes

__all__ = ["SharedPollOptions", "checkSharedPoll", "isSharedPoll"]

# Centrifugo's (centrifuge's SharedPollChannelOptions) values for an option left at 0.
DEFAULT_REFRESH_INTERVAL = 10.0
DEFAULT_REFRESH_BATCH_SIZE = 1000
DEFAULT_MAX_KEYS_PER_CONNECTION = 5000
DEFAULT_TRACK_EXPIRED_EXTRA_DELAY = 25.0


def isSharedPoll(options: Any) -> bool:
    """Whether a L{ChannelOptions} (or L{Config}) makes its channels shared poll ones."""
    return bool(options.subscription_type == "shared_poll")


@dataclass(frozen=True)
class SharedPollOptions:
    """
    How one shared poll channel is polled and tracked.

    @ivar proxy: the name in C{proxies} of the backend answering refresh requests.
    @ivar versionless: the backend sends no versions; the node numbers each change itself (C{mode} C{""} or
        C{"versionless"}), else C{"versioned"}.
    @ivar refreshInterval: seconds between two polls of every tracked key.
    @ivar batchSize: at most this many keys in one backend request.
    @ivar maxKeys: at most this many keys tracked by one connection in the channel (more: error 106).
    @ivar expiredExtraDelay: how long past its signature's expiry a key stays tracked, waiting for a refresh.
    @ivar publishEnabled: the server API's C{shared_poll_publish} serves the channel (versioned only), reaching
        the trackers of every node.
    """

    proxy: str
    versionless: bool = True
    refreshInterval: float = DEFAULT_REFRESH_INTERVAL
    batchSize: int = DEFAULT_REFRESH_BATCH_SIZE
    maxKeys: int = DEFAULT_MAX_KEYS_PER_CONNECTION
    expiredExtraDelay: float = DEFAULT_TRACK_EXPIRED_EXTRA_DELAY
    publishEnabled: bool = False

    @classmethod
    def of(cls, options: Any) -> "SharedPollOptions":
        """The shared poll options of a L{ChannelOptions}, 0 meaning Centrifugo's default."""
        return cls(
            proxy=options.shared_poll_proxy_name,
            versionless=options.shared_poll_mode != "versioned",
            refreshInterval=options.shared_poll_refresh_interval or DEFAULT_REFRESH_INTERVAL,
            batchSize=options.shared_poll_refresh_batch_size or DEFAULT_REFRESH_BATCH_SIZE,
            maxKeys=options.shared_poll_max_keys_per_connection or DEFAULT_MAX_KEYS_PER_CONNECTION,
            expiredExtraDelay=options.shared_poll_track_expired_extra_delay or DEFAULT_TRACK_EXPIRED_EXTRA_DELAY,
            publishEnabled=options.shared_poll_publish_enabled,
        )


def checkSharedPoll(config: Any) -> None:
    """
    Refuse a configuration whose shared poll channels could never work, as Centrifugo does at start: tracking
    needs C{shared_poll.hmac_secret_key}, and polling a named proxy of C{proxies} (httpstream has no unnamed
    shared poll proxy, so the name is required).

    @param config: a L{httpstream.config.Config}.
    """
    known = {proxy.name for proxy in config.proxies}
    for prefix, options in optionScopes(config):
        if not isSharedPoll(options):
            continue
        if not config.shared_poll_hmac_secret_key:
            raise ConfigError(
                f'config key "shared_poll_hmac_secret_key" (v6: "shared_poll.hmac_secret_key") is required: '
                f'"{prefix}subscription_type" is "shared_poll"'
            )
        if options.shared_poll_publish_enabled and options.shared_poll_mode != "versioned":
            raise ConfigError(
                f'config key "{prefix}shared_poll_publish_enabled" (v6: "shared_poll.publish_enabled") needs '
                f'"{prefix}shared_poll_mode" "versioned": a publication\'s version must be comparable with the '
                f"backend's (Centrifugo refuses it with versionless mode too)"
            )
        name = options.shared_poll_proxy_name
        if name not in known:
            raise ConfigError(
                f'config key "{prefix}shared_poll_proxy_name" (v6: "shared_poll.proxy_name"): a shared poll channel '
                f'needs a proxy of "proxies" to poll; got {_show(name)} (defined: {listed(known)})'
            )
