# -*- test-case-name: tests.test_config -*-
"""
The configuration: reading it (files in JSON, YAML or TOML; Centrifugo v5's flat names and v6's nested ones; the
C{CENTRIFUGO_*} environment variables), validating it, and the frozen values it becomes.

L{httpstream.config.options} holds the values (L{Config}, L{ChannelOptions}, L{Namespace}) and
L{httpstream.config.settings} how a field is declared and read; L{httpstream.config.file},
L{httpstream.config.v6} and L{httpstream.config.env} read documents and the environment into those fields, and
L{httpstream.config.write} writes them back (C{genconfig}, C{configdoc}). This package re-exports the public names.

It sits at the bottom of the layers: it imports nothing of httpstream but L{httpstream.origin} (origin patterns),
never the node, the engines or the reactor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional, Union

from httpstream.config.options import ChannelOptions, Config, Namespace
from httpstream.config.settings import ConfigError, Duration, setting

__all__ = [
    "ChannelOptions", "Config", "ConfigError", "Duration", "LoadedConfig", "Namespace", "load_config", "read_config",
    "setting",
]


@dataclass(frozen=True)
class LoadedConfig:
    """
    What L{read_config} found.

    @ivar config: the configuration.
    @ivar unknown_keys: one warning line per key of the file that was ignored (what C{checkconfig --strict}
        refuses, as Centrifugo's).
    @ivar unknown_env: one warning line per C{CENTRIFUGO_*} environment variable that is not a setting.
    @ivar env_applied: the names (never the values) of the environment variables that set a value.
    """

    config: Config
    unknown_keys: tuple[str, ...] = ()
    unknown_env: tuple[str, ...] = ()
    env_applied: tuple[str, ...] = ()

    @property
    def warnings(self) -> list[str]:
        """Every warning, for the start-up log."""
        return [*self.unknown_keys, *self.unknown_env]


def read_config(
    path: Union[str, os.PathLike[str]], environ: Optional[Mapping[str, str]] = None
) -> LoadedConfig:
    """
    Read and validate a configuration file: JSON, or YAML (C{.yaml}, C{.yml}) or TOML (C{.toml}) by its
    extension, with Centrifugo v5 or v6 key names; Centrifugo's C{CENTRIFUGO_*} environment variables override it.

    @param environ: the environment (default C{os.environ}).
    @raise ConfigError: When the file cannot be read or parsed, or a value (in it or in a variable) is invalid.
        The message is one line naming the key or variable.
    """
    from httpstream.config.file import loadConfigFile

    return loadConfigFile(path, environ)


def load_config(
    path: Union[str, os.PathLike[str]], environ: Optional[Mapping[str, str]] = None
) -> tuple[Config, list[str]]:
    """
    L{read_config}, returning the configuration and the warnings (one line each) about unknown keys of the file:
    what C{checkconfig --strict} refuses, as Centrifugo's. Unknown C{CENTRIFUGO_*} variables and the names of the
    variables applied are in L{read_config}'s result.
    """
    loaded = read_config(path, environ)
    return loaded.config, list(loaded.unknown_keys)
