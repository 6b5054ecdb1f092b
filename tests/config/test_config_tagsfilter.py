# -*- test-case-name: tests.config.test_config_tagsfilter -*-
"""
C{allow_tags_filter}, the channel option that lets subscribers send a publication tags filter: in the v5 flat form,
v6's C{channel.without_namespace} and C{channel.namespaces}, and the C{CENTRIFUGO_*} environment.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from httpstream.config import Config, ConfigError, config_from_dict, read_config


class AllowTagsFilterTests(SynchronousTestCase):
    def read(self, document: dict[str, object], environ: dict[str, str]) -> Config:
        directory = tempfile.mkdtemp(prefix="httpstream-test-tagsfilter-")
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "c.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(document, f)
        return read_config(path, environ).config

    def test_offByDefault(self) -> None:
        config, _ = config_from_dict({"namespaces": [{"name": "chat"}]})
        self.assertFalse(config.allow_tags_filter)
        self.assertFalse(config.namespaces[0].options.allow_tags_filter)

    def test_v5(self) -> None:
        config, warnings = config_from_dict(
            {"allow_tags_filter": True, "namespaces": [{"name": "chat", "allow_tags_filter": True}, {"name": "news"}]}
        )
        self.assertEqual(warnings, [])
        self.assertTrue(config.allow_tags_filter)
        self.assertEqual([n.options.allow_tags_filter for n in config.namespaces], [True, False])

    def test_v6(self) -> None:
        config, warnings = config_from_dict({"channel": {
            "without_namespace": {"allow_tags_filter": True},
            "namespaces": [{"name": "chat", "allow_tags_filter": True}, {"name": "news"}],
        }})
        self.assertEqual(warnings, [])
        self.assertTrue(config.allow_tags_filter)
        self.assertEqual([n.options.allow_tags_filter for n in config.namespaces], [True, False])

    def test_environment(self) -> None:
        config = self.read(
            {"channel": {"namespaces": [{"name": "chat"}, {"name": "news"}]}},
            {"CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_ALLOW_TAGS_FILTER": "true",
             "CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_ALLOW_TAGS_FILTER": "true"},
        )
        self.assertTrue(config.allow_tags_filter)
        self.assertEqual([n.options.allow_tags_filter for n in config.namespaces],
                         [True, False])
        v5 = self.read({}, {"CENTRIFUGO_ALLOW_TAGS_FILTER": "1"})
        self.assertTrue(v5.allow_tags_filter)

    def test_badValue(self) -> None:
        """Not a boolean: one clear line naming the key."""
        for document in ({"allow_tags_filter": "yes"},
                         {"channel": {"namespaces": [{"name": "chat", "allow_tags_filter": 1}]}}):
            with self.assertRaises(ConfigError) as raised:
                config_from_dict(document)
            message = str(raised.exception)
            self.assertIn("allow_tags_filter", message)
            self.assertIn("expected true or false", message)
            self.assertNotIn("\n", message)
