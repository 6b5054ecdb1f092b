"""
How a map namespace's options become its channels' L{MapSettings} (L{httpstream.node.maps.mapSettings}), the meta
TTL's derivation above all (centrifuge's): C{map.meta_ttl} when set; for ever when keys never expire; else ten stream
TTLs, at least the key TTL.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from httpstream.config import config_from_dict
from httpstream.engines.maps import MapSettings
from httpstream.node.maps import mapSettings


def settings(**options: Any) -> MapSettings:
    config, _ = config_from_dict({"subscription_type": "map", **{f"map_{k}": v for k, v in options.items()}})
    return mapSettings(config)  # the top level: a Config is a ChannelOptions


class MapSettingsTests(SynchronousTestCase):
    def test_persistentForEver(self) -> None:
        self.assertEqual(settings(mode="persistent"), MapSettings(positioned=True, keyTTL=0, streamSize=100,
                                                                  streamTTL=60, metaTTL=0))

    def test_recoverableDerived(self) -> None:
        self.assertEqual(settings(mode="recoverable", key_ttl="30s").metaTTL, 600)
        self.assertEqual(settings(mode="recoverable", key_ttl="30s", stream_ttl="5m").metaTTL, 3000)
        self.assertEqual(settings(mode="recoverable", key_ttl="2h").metaTTL, 7200)
        self.assertEqual(settings(mode="recoverable", key_ttl="30s", meta_ttl="90s").metaTTL, 90)

    def test_ephemeralFreedToo(self) -> None:
        ephemeral = settings(mode="ephemeral", key_ttl="60s")
        self.assertFalse(ephemeral.positioned)
        self.assertEqual((ephemeral.streamSize, ephemeral.metaTTL), (1000, 600))
