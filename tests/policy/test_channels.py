"""
Tests for L{httpstream.policy.channels}: channel options by namespace, channel names, and the subscribe, publish, presence
and history permissions (Centrifugo v5's ``internal/rule`` and ``OnSubscribe``/``OnPublish``/``OnPresence``/
``OnHistory``).
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.trial.unittest import SynchronousTestCase

from httpstream.protocol import codes
from httpstream.policy.channels import ChannelError, ChannelRules
from httpstream.config import ChannelOptions, Config

DENIED = codes.ERROR_PERMISSION_DENIED
NOT_AVAILABLE = codes.ERROR_NOT_AVAILABLE
BAD = codes.ERROR_BAD_REQUEST
UNKNOWN = codes.ERROR_UNKNOWN_CHANNEL
HISTORY = {"history_size": 10, "history_ttl": "1m"}


def rules(**settings: Any) -> ChannelRules:
    return ChannelRules(Config(**settings))


def optionsError(r: ChannelRules, channel: str) -> Optional[codes.Error]:
    try:
        r.options(channel)
    except ChannelError as e:
        return e.error
    return None


class OptionsTests(SynchronousTestCase):
    """
    L{ChannelRules.options} finds a channel's namespace and checks its name.
    """

    def setUp(self) -> None:
        self.rules = rules(
            presence=True,
            namespaces=[{"name": "chat", "join_leave": True}, {"name": "news.eu", **HISTORY}],
        )
        self.top = ChannelOptions(presence=True)
        self.chat = ChannelOptions(join_leave=True)
        self.news = ChannelOptions(history_size=10, history_ttl=60.0)

    def test_namespaces(self) -> None:
        table = [
            ("room", self.top),
            ("$room", self.top),
            ("room#alice", self.top),
            ("chat:room", self.chat),
            ("chat:", self.chat),
            ("$chat:room", self.chat),
            ("chat:a:b", self.chat),
            ("news.eu:x", self.news),
            (":room", self.top),  # an empty namespace name is the top level, as in Centrifugo
            ("", self.top),
        ]
        for channel, options in table:
            self.assertEqual(self.rules.options(channel), options, channel)
            self.assertEqual(self.rules.namespaceOptions(channel), options, channel)

    def test_unknownNamespace(self) -> None:
        for channel in ["games:1", "$games:1", "Chat:room", "chat.x:room", "$$chat:room", "news:eu"]:
            with self.assertRaises(ChannelError, msg=channel) as raised:
                self.rules.options(channel)
            self.assertEqual(raised.exception.error, UNKNOWN)
            self.assertEqual(raised.exception.error.code, 102)
            self.assertRaises(ChannelError, self.rules.namespaceOptions, channel)

    def test_customBoundaries(self) -> None:
        r = rules(channel_namespace_boundary="/", channel_private_prefix="!", namespaces=[{"name": "chat", "presence": True}])
        self.assertTrue(r.options("chat/room").presence)
        self.assertTrue(r.options("!chat/room").presence)
        self.assertFalse(r.options("chat:room").presence)
        self.assertEqual(optionsError(r, "$chat/room"), UNKNOWN)

    def test_noNamespaceBoundary(self) -> None:
        """
        An empty channel_namespace_boundary turns namespaces off: every channel has the top-level options.
        """
        r = rules(channel_namespace_boundary="", namespaces=[{"name": "chat", "presence": True}])
        self.assertFalse(r.options("chat:room").presence)

    def test_maxLength(self) -> None:
        table: list[tuple[dict[str, Any], str, Optional[codes.Error]]] = [
            ({}, "a" * 255, None),
            ({}, "a" * 256, BAD),
            ({"channel_max_length": 5}, "abcde", None),
            ({"channel_max_length": 5}, "abcdef", BAD),
            ({"channel_max_length": 0}, "a" * 255, None),  # 0 means 255, as in Centrifuge
            ({"channel_max_length": 0}, "a" * 256, BAD),
            ({"channel_max_length": 300}, "a" * 300, None),
            ({"channel_max_length": 5}, "zz:abc", BAD),  # checked before the namespace
            # UTF-8 bytes, as Go's len(): 3 characters, 6 bytes.
            ({"channel_max_length": 5, "channel_regex": "."}, "\u00e9\u00e9\u00e9", BAD),
            ({"channel_max_length": 6, "channel_regex": "."}, "\u00e9\u00e9\u00e9", None),
        ]
        for settings, channel, error in table:
            self.assertEqual(optionsError(rules(**settings), channel), error, (settings, channel))

    def test_ascii(self) -> None:
        """
        Without channel_regex a channel must be ASCII; the namespace is looked up first, so an unknown non-ASCII
        namespace is 102.
        """
        r = rules(namespaces=[{"name": "chat"}])
        table = [
            ("news-1_a.b#alice,bob", None),
            ("chat:room !~", None),
            ("caf\u00e9", BAD),
            ("chat:caf\u00e9", BAD),
            ("$caf\u00e9", BAD),
            ("\u0447\u0430\u0442:room", UNKNOWN),
        ]
        for channel, error in table:
            self.assertEqual(optionsError(r, channel), error, channel)

    def test_regex(self) -> None:
        """
        With channel_regex, the part after the namespace boundary must match it (re.search); non-ASCII is then
        allowed. Without a namespace the whole channel is matched, private prefix included.
        """
        r = rules(
            channel_regex=r"^\$?[a-z]+$",
            namespaces=[{"name": "chat", "channel_regex": "^[a-z0-9]+$"}, {"name": "free", "channel_regex": "[0-9]"}],
        )
        table = [
            ("room", None),
            ("$room", None),
            ("Room", BAD),
            ("room1", BAD),
            ("chat:room1", None),
            ("$chat:room1", None),
            ("chat:Room", BAD),
            ("chat:", BAD),
            ("chat:a:b", BAD),
            ("free:x1y", None),  # search, not fullmatch
            ("free:\u00e91", None),  # non-ASCII allowed by the regex
            ("free:abc", BAD),
        ]
        for channel, error in table:
            self.assertEqual(optionsError(r, channel), error, channel)

    def test_regexOfOtherNamespaceIgnored(self) -> None:
        r = rules(namespaces=[{"name": "chat", "channel_regex": "^[a-z]+$"}])
        self.assertIsNone(optionsError(r, "ROOM"))
        self.assertEqual(optionsError(r, "caf\u00e9"), BAD)

    def test_namespaceOptionsSkipsNameChecks(self) -> None:
        """
        For the server API, only the namespace is checked (Centrifugo does not validate names there).
        """
        r = rules(channel_max_length=3, namespaces=[{"name": "chat", "channel_regex": "^a$"}])
        self.assertEqual(r.namespaceOptions("chat:caf\u00e9 long"), ChannelOptions(channel_regex="^a$"))

    def test_validate(self) -> None:
        """
        L{ChannelRules.validate} returns the error of L{ChannelRules.options}.
        """
        self.assertIsNone(self.rules.validate("chat:room"))
        self.assertEqual(self.rules.validate("games:room"), UNKNOWN)
        self.assertEqual(self.rules.validate("caf\u00e9"), BAD)
        self.assertEqual(self.rules.validate("a" * 256), BAD)

    def test_channelError(self) -> None:
        error = ChannelError(UNKNOWN)
        self.assertIs(error.error, UNKNOWN)
        self.assertEqual(error.args, (102, "unknown channel"))


class NameTests(SynchronousTestCase):
    """
    Private channels, user-limited channels and personal channels.
    """

    def test_isPrivate(self) -> None:
        table = [
            ({}, "$secret", True),
            ({}, "$chat:room", True),
            ({}, "secret", False),
            ({}, "chat:$room", False),
            ({"channel_private_prefix": "!"}, "!secret", True),
            ({"channel_private_prefix": "!"}, "$secret", False),
            ({"channel_private_prefix": ""}, "$secret", False),
        ]
        for settings, channel, private in table:
            self.assertEqual(rules(**settings).isPrivate(channel), private, (settings, channel))

    def test_userAllowed(self) -> None:
        table = [
            ({}, "dialog#alice,bob", "alice", True),
            ({}, "dialog#alice,bob", "bob", True),
            ({}, "dialog#alice,bob", "carol", False),
            ({}, "dialog#alice,bob", "", False),
            ({}, "dialog#alice,bob", "alice,bob", False),
            ({}, "#alice", "alice", True),
            ({}, "chat:#alice", "alice", True),
            ({}, "a#bob#alice", "alice", True),  # the last boundary counts
            ({}, "a#bob#alice", "bob", False),
            ({}, "dialog", "anyone", True),  # no boundary: no user list
            ({}, "dialog#", "", True),  # an empty list names the anonymous user, as in Centrifugo
            ({"channel_user_boundary": "@"}, "dialog@alice", "alice", True),
            ({"channel_user_boundary": "@"}, "dialog#alice", "bob", True),
            ({"channel_user_separator": ";"}, "dialog#alice;bob", "bob", True),
            ({"channel_user_separator": ""}, "dialog#alice,bob", "alice", False),
            ({"channel_user_separator": ""}, "dialog#alice,bob", "alice,bob", True),
            ({"channel_user_boundary": ""}, "dialog#alice", "bob", True),
        ]
        for settings, channel, user, allowed in table:
            self.assertEqual(rules(**settings).userAllowed(channel, user), allowed, (settings, channel, user))

    def test_isUserLimited(self) -> None:
        limited = ChannelOptions(allow_user_limited_channels=True)
        table = [
            ({}, "dialog#alice", limited, True),
            ({}, "dialog#alice", ChannelOptions(), False),
            ({}, "dialog", limited, False),
            ({"channel_user_boundary": ""}, "dialog#alice", limited, False),
        ]
        for settings, channel, options, expected in table:
            self.assertEqual(rules(**settings).isUserLimited(channel, options), expected, (settings, channel))

    def test_personalChannel(self) -> None:
        table = [
            ({}, "alice", "#alice"),
            ({"user_personal_channel_namespace": "personal"}, "alice", "personal:#alice"),
            (
                {"user_personal_channel_namespace": "personal", "channel_namespace_boundary": "/"},
                "alice",
                "personal/#alice",
            ),
            ({"channel_user_boundary": "@"}, "bob", "@bob"),
        ]
        for settings, user, channel in table:
            self.assertEqual(rules(**settings).personalChannel(user), channel, settings)

    def test_personalChannelHasItsNamespace(self) -> None:
        r = rules(
            user_subscribe_to_personal=True,
            user_personal_channel_namespace="personal",
            namespaces=[{"name": "personal", "presence": True}],
        )
        self.assertTrue(r.options(r.personalChannel("alice")).presence)


class SubscribeTests(SynchronousTestCase):
    """
    L{ChannelRules.canSubscribe} follows Centrifugo's OnSubscribe.
    """

    def check(self, settings: dict[str, Any], user: str, channel: str, hasToken: bool) -> Optional[codes.Error]:
        r = rules(**settings)
        return r.canSubscribe(user, channel, r.options(channel), hasToken)

    def test_table(self) -> None:
        forClient = {"allow_subscribe_for_client": True}
        anonymous = {"allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True}
        limited = {"allow_user_limited_channels": True}
        table: list[tuple[dict[str, Any], str, str, bool, Optional[codes.Error]]] = [
            # Nothing allowed by default.
            ({}, "alice", "news", False, DENIED),
            ({}, "", "news", False, DENIED),
            # allow_subscribe_for_client: users; anonymous only with allow_subscribe_for_anonymous.
            (forClient, "alice", "news", False, None),
            (forClient, "", "news", False, DENIED),
            (anonymous, "", "news", False, None),
            ({"allow_subscribe_for_anonymous": True}, "", "news", False, DENIED),
            # client_insecure allows everything but private channels without token.
            ({"client_insecure": True}, "", "news", False, None),
            ({"client_insecure": True}, "", "$news", False, DENIED),
            ({"client_insecure": True}, "", "$news", True, None),
            # Private channels need a token; with one (verified by the caller) everything is allowed.
            (anonymous, "alice", "$news", False, DENIED),
            ({}, "alice", "$news", True, None),
            ({}, "", "$news", True, None),
            ({}, "alice", "news", True, None),
            # User-limited channels: the listed users without token, when the option is on.
            (limited, "alice", "dialog#alice,bob", False, None),
            (limited, "bob", "dialog#alice,bob", False, None),
            (limited, "carol", "dialog#alice,bob", False, DENIED),
            (limited, "", "dialog#alice,bob", False, DENIED),
            (limited, "carol", "dialog#alice,bob", True, None),
            (limited, "alice", "$dialog#alice", False, DENIED),
            ({**limited, "client_insecure": True}, "carol", "dialog#alice", False, None),
            # allow_subscribe_for_client does not open user-limited channels to others...
            ({**limited, **forClient}, "carol", "dialog#alice", False, DENIED),
            ({**limited, **forClient}, "alice", "dialog#alice", False, None),
            # ...but without allow_user_limited_channels "#" is an ordinary character.
            (forClient, "carol", "dialog#alice", False, None),
            ({}, "alice", "dialog#alice", False, DENIED),
        ]
        for settings, user, channel, hasToken, expected in table:
            self.assertEqual(self.check(settings, user, channel, hasToken), expected, (settings, user, channel, hasToken))

    def test_namespaceOptions(self) -> None:
        """
        The options passed decide, not the top-level ones.
        """
        r = rules(namespaces=[{"name": "public", "allow_subscribe_for_client": True}])
        self.assertIsNone(r.canSubscribe("alice", "public:x", r.options("public:x"), False))
        self.assertEqual(r.canSubscribe("alice", "x", r.options("x"), False), DENIED)

    def test_subscribeProxied(self) -> None:
        proxied = ChannelOptions(proxy_subscribe=True)
        proxiedLimited = ChannelOptions(proxy_subscribe=True, allow_user_limited_channels=True)
        table = [
            (proxied, "news", False, True),
            (proxied, "news", True, False),  # a token decides
            (proxied, "$news", False, False),  # refused by canSubscribe
            (proxied, "dialog#alice", False, True),
            (proxiedLimited, "dialog#alice", False, False),
            (proxiedLimited, "news", False, True),
            (ChannelOptions(), "news", False, False),
        ]
        r = rules()
        for options, channel, hasToken, expected in table:
            self.assertEqual(r.subscribeProxied(channel, options, hasToken), expected, (options, channel, hasToken))


class PublishTests(SynchronousTestCase):
    """
    L{ChannelRules.canPublish} follows Centrifugo's OnPublish.
    """

    def test_table(self) -> None:
        forClient = {"allow_publish_for_client": True}
        forSubscriber = {"allow_publish_for_subscriber": True}
        anonymous = {"allow_publish_for_anonymous": True}
        table: list[tuple[dict[str, Any], str, bool, Optional[codes.Error]]] = [
            ({}, "alice", True, DENIED),
            ({}, "", True, DENIED),
            (forClient, "alice", False, None),
            (forClient, "alice", True, None),
            (forClient, "", False, DENIED),
            ({**forClient, **anonymous}, "", False, None),
            (forSubscriber, "alice", True, None),
            (forSubscriber, "alice", False, DENIED),
            (forSubscriber, "", True, DENIED),
            ({**forSubscriber, **anonymous}, "", True, None),
            ({**forSubscriber, **anonymous}, "", False, DENIED),
            (anonymous, "", True, DENIED),
            ({"client_insecure": True}, "", False, None),
            ({"allow_subscribe_for_client": True}, "alice", True, DENIED),
        ]
        for settings, user, subscribed, expected in table:
            r = rules(**settings)
            result = r.canPublish(user, "news", r.options("news"), subscribed)
            self.assertEqual(result, expected, (settings, user, subscribed))

    def test_namespaceOptions(self) -> None:
        r = rules(namespaces=[{"name": "chat", "allow_publish_for_client": True}])
        self.assertIsNone(r.canPublish("alice", "chat:1", r.options("chat:1"), False))
        self.assertEqual(r.canPublish("alice", "news", r.options("news"), True), DENIED)


class PresenceTests(SynchronousTestCase):
    """
    L{ChannelRules.canPresence} (presence and presence_stats): 108 when presence is off, else the permissions.
    """

    def test_table(self) -> None:
        forClient = {"allow_presence_for_client": True}
        forSubscriber = {"allow_presence_for_subscriber": True}
        anonymous = {"allow_presence_for_anonymous": True}
        table: list[tuple[dict[str, Any], str, bool, Optional[codes.Error]]] = [
            ({}, "alice", True, NOT_AVAILABLE),
            ({**forClient, "client_insecure": True}, "alice", True, NOT_AVAILABLE),
            ({"presence": True}, "alice", True, DENIED),
            ({"presence": True, **forClient}, "alice", False, None),
            ({"presence": True, **forClient}, "", False, DENIED),
            ({"presence": True, **forClient, **anonymous}, "", False, None),
            ({"presence": True, **forSubscriber}, "alice", True, None),
            ({"presence": True, **forSubscriber}, "alice", False, DENIED),
            ({"presence": True, **forSubscriber}, "", True, DENIED),
            ({"presence": True, **forSubscriber, **anonymous}, "", True, None),
            ({"presence": True, **anonymous}, "", True, DENIED),
            ({"presence": True, "client_insecure": True}, "", False, None),
            ({"presence": True, "allow_history_for_client": True}, "alice", True, DENIED),
        ]
        for settings, user, subscribed, expected in table:
            r = rules(**settings)
            result = r.canPresence(user, "news", r.options("news"), subscribed)
            self.assertEqual(result, expected, (settings, user, subscribed))
            if expected is not NOT_AVAILABLE:
                access = r.presenceAccess(user, "news", r.options("news"), subscribed)
                self.assertEqual(access, expected is None, (settings, user, subscribed))

    def test_accessWithoutPresence(self) -> None:
        """
        presenceAccess is the permission alone, whether presence is on or not.
        """
        r = rules(allow_presence_for_client=True)
        self.assertTrue(r.presenceAccess("alice", "news", r.options("news"), False))


class HistoryTests(SynchronousTestCase):
    """
    L{ChannelRules.canHistory}: 108 without history (size and TTL), else the permissions.
    """

    def test_table(self) -> None:
        forClient = {"allow_history_for_client": True}
        forSubscriber = {"allow_history_for_subscriber": True}
        anonymous = {"allow_history_for_anonymous": True}
        table: list[tuple[dict[str, Any], str, bool, Optional[codes.Error]]] = [
            ({}, "alice", True, NOT_AVAILABLE),
            ({**forClient, "client_insecure": True}, "alice", True, NOT_AVAILABLE),
            ({**HISTORY}, "alice", True, DENIED),
            ({**HISTORY, **forClient}, "alice", False, None),
            ({**HISTORY, **forClient}, "", False, DENIED),
            ({**HISTORY, **forClient, **anonymous}, "", False, None),
            ({**HISTORY, **forSubscriber}, "alice", True, None),
            ({**HISTORY, **forSubscriber}, "alice", False, DENIED),
            ({**HISTORY, **forSubscriber}, "", True, DENIED),
            ({**HISTORY, **forSubscriber, **anonymous}, "", True, None),
            ({**HISTORY, **anonymous}, "", True, DENIED),
            ({**HISTORY, "client_insecure": True}, "", False, None),
            ({**HISTORY, "allow_presence_for_client": True}, "alice", True, DENIED),
        ]
        for settings, user, subscribed, expected in table:
            r = rules(**settings)
            result = r.canHistory(user, "news", r.options("news"), subscribed)
            self.assertEqual(result, expected, (settings, user, subscribed))
            if expected is not NOT_AVAILABLE:
                access = r.historyAccess(user, "news", r.options("news"), subscribed)
                self.assertEqual(access, expected is None, (settings, user, subscribed))

    def test_namespaceHistory(self) -> None:
        r = rules(namespaces=[{"name": "chat", **HISTORY, "allow_history_for_client": True}])
        self.assertIsNone(r.canHistory("alice", "chat:1", r.options("chat:1"), False))
        self.assertEqual(r.canHistory("alice", "news", r.options("news"), False), NOT_AVAILABLE)

    def test_accessWithoutHistory(self) -> None:
        r = rules(allow_history_for_subscriber=True)
        self.assertTrue(r.historyAccess("alice", "news", r.options("news"), True))
        self.assertFalse(r.historyAccess("alice", "news", r.options("news"), False))
