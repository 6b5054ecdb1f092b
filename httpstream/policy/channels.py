# -*- test-case-name: tests.policy.test_channels -*-
"""
Channel rules: which options a channel has, whether its name is valid, and who may subscribe, publish, or read its
presence and history.

This is Centrifugo v5's ``internal/rule`` package and the permission part of its ``OnSubscribe``, ``OnPublish``,
``OnPresence`` and ``OnHistory`` handlers. A client command is checked in this order::

    options = rules.options(channel)          # ChannelError: 102 unknown namespace, 107 bad name
    error = rules.canPublish(user, channel, options, channel in subscribed)   # None or 103

Permission methods return C{None} (allowed) or the L{codes.Error} to reply with; they never raise.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

from httpstream.protocol import codes
from httpstream.config import ChannelOptions, Config

__all__ = ["ChannelError", "ChannelRules"]

# Centrifuge: "Zero value means 255."
_DEFAULT_MAX_LENGTH = 255


class ChannelError(Exception):
    """
    A channel cannot be used: its namespace is unknown or its name is invalid.

    @ivar error: The reply error (102 or 107).
    """

    def __init__(self, error: codes.Error) -> None:
        super().__init__(error.code, error.message)
        self.error = error


class ChannelRules:
    """
    Decides on channel names and permissions from a L{Config}.

    All methods are pure functions of the config and their arguments: cheap, synchronous, and safe to call for
    every command.
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        fields = dataclasses.fields(ChannelOptions)
        self._topLevel = ChannelOptions(**{f.name: getattr(config, f.name) for f in fields})
        self._namespaces = {namespace.name: namespace.options for namespace in config.namespaces}
        self._regexes: dict[str, re.Pattern[str]] = {}
        for options in [self._topLevel, *self._namespaces.values()]:
            if options.channel_regex:
                self._regexes[options.channel_regex] = re.compile(options.channel_regex)

    # Names and options

    def _split(self, channel: str) -> tuple[str, str]:
        """
        Split C{channel} into its namespace name ("" for none) and the rest, as Centrifugo's C{namespaceName}:
        without a boundary, the rest is the whole channel, private prefix included; an empty namespace name (as in
        C{":news"}) means the top-level options too.
        """
        c = self._config
        stripped = channel
        if c.channel_private_prefix and channel.startswith(c.channel_private_prefix):
            stripped = channel[len(c.channel_private_prefix):]
        if c.channel_namespace_boundary and c.channel_namespace_boundary in stripped:
            namespace, rest = stripped.split(c.channel_namespace_boundary, 1)
            return namespace, rest
        return "", channel

    def namespaceName(self, channel: str) -> str:
        """The name of C{channel}'s namespace ("" for none), as metrics label it."""
        return self._split(channel)[0]

    def namespaceOptions(self, channel: str) -> ChannelOptions:
        """
        Look up the options of C{channel}'s namespace without checking the rest of the name: for the server API and
        server-side subscriptions, where Centrifugo does not validate names.

        The namespace is the part before the first C{channel_namespace_boundary} (":") once a leading
        C{channel_private_prefix} ("$") is removed; a channel without the boundary has the top-level options.

        @raise ChannelError: 102 "unknown channel" when the namespace is not configured.
        """
        namespace, _ = self._split(channel)
        if not namespace:
            return self._topLevel
        options = self._namespaces.get(namespace)
        if options is None:
            raise ChannelError(codes.ERROR_UNKNOWN_CHANNEL)
        return options

    def options(self, channel: str) -> ChannelOptions:
        """
        The options of C{channel}, for a client command (subscribe, publish, presence, presence_stats, history).

        @raise ChannelError: 107 "bad request" when the name is longer than C{channel_max_length} (UTF-8 bytes; 0
            means 255); 102 "unknown channel" when the namespace is not configured; 107 when the name is not ASCII
            (no C{channel_regex}) or the part after the namespace boundary (the whole name without a namespace) does
            not match the C{channel_regex} of its options (C{re.search}, so anchor the pattern).
        """
        if len(channel.encode("utf-8")) > (self._config.channel_max_length or _DEFAULT_MAX_LENGTH):
            raise ChannelError(codes.ERROR_BAD_REQUEST)
        options = self.namespaceOptions(channel)
        if options.channel_regex:
            _, rest = self._split(channel)
            if self._regexes[options.channel_regex].search(rest) is None:
                raise ChannelError(codes.ERROR_BAD_REQUEST)
        elif not channel.isascii():
            raise ChannelError(codes.ERROR_BAD_REQUEST)
        return options

    def validate(self, channel: str) -> Optional[codes.Error]:
        """
        The error of L{options} for C{channel} (102 or 107), or C{None} when the channel can be used.
        """
        try:
            self.options(channel)
        except ChannelError as e:
            return e.error
        return None

    def isPrivate(self, channel: str) -> bool:
        """
        Whether C{channel} starts with C{channel_private_prefix} ("$"): subscribing then needs a subscription token.
        """
        prefix = self._config.channel_private_prefix
        return bool(prefix) and channel.startswith(prefix)

    def isUserLimited(self, channel: str, options: ChannelOptions) -> bool:
        """
        Whether C{channel} is user-limited: its options have C{allow_user_limited_channels} and its name contains
        C{channel_user_boundary} ("#").
        """
        boundary = self._config.channel_user_boundary
        return options.allow_user_limited_channels and bool(boundary) and boundary in channel

    def userAllowed(self, channel: str, user: str) -> bool:
        """
        Whether the user list of C{channel} names C{user}: the text after the last C{channel_user_boundary} ("#"),
        split at C{channel_user_separator} (","). A channel without the boundary allows everyone (as Centrifugo's
        C{UserAllowed}); whether the list counts at all is L{isUserLimited}.
        """
        c = self._config
        if not c.channel_user_boundary or c.channel_user_boundary not in channel:
            return True
        users = channel.rsplit(c.channel_user_boundary, 1)[1]
        if not c.channel_user_separator:
            return users == user
        return user in users.split(c.channel_user_separator)

    def personalChannel(self, user: str) -> str:
        """
        The personal channel of C{user} (for C{user_subscribe_to_personal}): C{#<user>}, or
        C{<namespace>:#<user>} with C{user_personal_channel_namespace}.
        """
        c = self._config
        channel = c.channel_user_boundary + user
        if c.user_personal_channel_namespace:
            return c.user_personal_channel_namespace + c.channel_namespace_boundary + channel
        return channel

    # Subscribe

    def subscribeProxied(self, channel: str, options: ChannelOptions, hasToken: bool) -> bool:
        """
        Whether the subscribe proxy decides on this subscription instead of L{canSubscribe}: the options have
        C{proxy_subscribe} or a C{subscribe_proxy_name}, no subscription token was given, and the channel is neither
        private (refused without a token) nor user-limited. The caller answers 108 when that proxy has no endpoint.
        """
        if not (options.proxy_subscribe or options.subscribe_proxy_name) or hasToken:
            return False
        return not self.isPrivate(channel) and not self.isUserLimited(channel, options)

    def canSubscribe(
        self, user: str, channel: str, options: ChannelOptions, hasToken: bool
    ) -> Optional[codes.Error]:
        """
        Whether C{user} ("" for anonymous) may subscribe to C{channel}, whose options are C{options}
        (from L{options}), as Centrifugo's C{OnSubscribe} (proxies aside: see L{subscribeProxied}).

        In order: a private channel without token -> 103, even with C{client_insecure}; a token -> allowed (the
        caller has verified it: invalid -> 103, expired -> 109, wrong channel/user/client -> disconnect 3500); a
        user-limited channel listing C{user} -> allowed; C{allow_subscribe_for_client} and (C{user} or
        C{allow_subscribe_for_anonymous}) on a channel that is not user-limited -> allowed; C{client_insecure} ->
        allowed; else 103.

        @param hasToken: The subscribe request carried a subscription token, which the caller verifies.
        @return: C{None} when allowed, else L{codes.ERROR_PERMISSION_DENIED}.
        """
        if self.isPrivate(channel) and not hasToken:
            return codes.ERROR_PERMISSION_DENIED
        if hasToken:
            return None
        userLimited = self.isUserLimited(channel, options)
        if userLimited and self.userAllowed(channel, user):
            return None
        if options.allow_subscribe_for_client and (user or options.allow_subscribe_for_anonymous) and not userLimited:
            return None
        if self._config.client_insecure:
            return None
        return codes.ERROR_PERMISSION_DENIED

    # Publish, presence, history

    def canPublish(
        self, user: str, channel: str, options: ChannelOptions, subscribed: bool
    ) -> Optional[codes.Error]:
        """
        Whether C{user} ("" for anonymous) may publish to C{channel}, as Centrifugo's C{OnPublish}. When
        C{options.proxy_publish} is on, the publish proxy decides instead (108 without C{proxy_publish_endpoint}).

        Allowed with C{allow_publish_for_client}, or C{allow_publish_for_subscriber} while C{subscribed}, each for
        anonymous users only with C{allow_publish_for_anonymous}; or with C{client_insecure}.

        @param subscribed: The connection is subscribed to C{channel}.
        @return: C{None} when allowed, else L{codes.ERROR_PERMISSION_DENIED}.
        """
        return self._allowed(
            user,
            subscribed,
            options.allow_publish_for_client,
            options.allow_publish_for_subscriber,
            options.allow_publish_for_anonymous,
        )

    def presenceAccess(self, user: str, channel: str, options: ChannelOptions, subscribed: bool) -> bool:
        """
        Whether C{user} may read C{channel}'s presence, whether or not presence is on (Centrifugo's
        C{hasAccessToPresence}): C{allow_presence_for_client}, or C{allow_presence_for_subscriber} while
        C{subscribed}, each for anonymous users only with C{allow_presence_for_anonymous}; or C{client_insecure}.
        Also decides whether a subscriber asking for join/leave gets them.
        """
        return self._allowed(
            user,
            subscribed,
            options.allow_presence_for_client,
            options.allow_presence_for_subscriber,
            options.allow_presence_for_anonymous,
        ) is None

    def historyAccess(self, user: str, channel: str, options: ChannelOptions, subscribed: bool) -> bool:
        """
        Whether C{user} may read C{channel}'s history, whether or not history is on (Centrifugo's
        C{hasAccessToHistory}): C{allow_history_for_client}, or C{allow_history_for_subscriber} while C{subscribed},
        each for anonymous users only with C{allow_history_for_anonymous}; or C{client_insecure}. At subscribe time
        pass C{subscribed=False}, as Centrifugo does, to decide whether the subscription may be positioned or
        recovered on request.
        """
        return self._allowed(
            user,
            subscribed,
            options.allow_history_for_client,
            options.allow_history_for_subscriber,
            options.allow_history_for_anonymous,
        ) is None

    def canPresence(self, user: str, channel: str, options: ChannelOptions, subscribed: bool) -> Optional[codes.Error]:
        """
        Whether C{user} may call presence or presence_stats on C{channel}.

        @return: C{None} when allowed; L{codes.ERROR_NOT_AVAILABLE} (108) when the options have no C{presence};
            L{codes.ERROR_PERMISSION_DENIED} (103) without L{presenceAccess}.
        """
        if not options.presence:
            return codes.ERROR_NOT_AVAILABLE
        if not self.presenceAccess(user, channel, options, subscribed):
            return codes.ERROR_PERMISSION_DENIED
        return None

    def canHistory(self, user: str, channel: str, options: ChannelOptions, subscribed: bool) -> Optional[codes.Error]:
        """
        Whether C{user} may call history on C{channel}.

        @return: C{None} when allowed; L{codes.ERROR_NOT_AVAILABLE} (108) when the channel keeps no history
            (C{options.history} is false); L{codes.ERROR_PERMISSION_DENIED} (103) without L{historyAccess}.
        """
        if not options.history:
            return codes.ERROR_NOT_AVAILABLE
        if not self.historyAccess(user, channel, options, subscribed):
            return codes.ERROR_PERMISSION_DENIED
        return None

    def _allowed(
        self, user: str, subscribed: bool, forClient: bool, forSubscriber: bool, forAnonymous: bool
    ) -> Optional[codes.Error]:
        userOK = bool(user) or forAnonymous
        if (forClient or (forSubscriber and subscribed)) and userOK:
            return None
        if self._config.client_insecure:
            return None
        return codes.ERROR_PERMISSION_DENIED
