# -*- test-case-name: tests.config.test_config -*-
"""
The configuration: reading it (files in JSON, YAML or TOML; Centrifugo v5's flat names and v6's nested ones; the
C{CENTRIFUGO_*} environment variables), validating it, and the frozen values it becomes.

L{httpstream.config.options} holds the values (L{Config}, L{ChannelOptions}, L{Namespace}) and
L{httpstream.config.settings} how a field is declared and read; L{httpstream.config.file},
L{httpstream.config.v6} and L{httpstream.config.env} read documents and the environment into those fields, and
L{httpstream.config.write} writes them back (C{genconfig}, C{configdoc}). This package re-exports the public names.

May import: nothing of httpstream but L{httpstream.origin} (origin patterns); never the node, the engines or the
reactor. Within the package the arrows go options/settings <- v6 <- env <- file <- this facade.
"""

from __future__ import annotations

from httpstream.config.options import ChannelOptions, Config, Namespace
from httpstream.config.settings import ConfigError, Duration, setting
from httpstream.config.file import LoadedConfig, load_config, read_config
from httpstream.config.v6 import config_from_dict

__all__ = [
    "ChannelOptions", "Config", "ConfigError", "Duration", "LoadedConfig", "Namespace", "config_from_dict", "load_config",
    "read_config", "setting",
]


