# -*- test-case-name: tests.config.test_config_v6 -*-
"""
Configuration files: JSON, YAML or TOML (chosen by the extension, as Centrifugo's viper does), then the
environment over them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import orjson
import yaml

from httpstream.config.options import Config
from httpstream.config.settings import ConfigError, _show
from httpstream.config.env import applyEnvironment, relabel
from httpstream.config.v6 import documentLeaves, fieldsFromLeaves

__all__ = ["LoadedConfig", "load_config", "loadConfigFile", "read_config", "readDocument"]

_YAML = (".yaml", ".yml")
_TOML = (".toml",)


def _format(path: str) -> str:
    extension = os.path.splitext(path)[1].lower()
    if extension in _YAML:
        return "YAML"
    if extension in _TOML:
        return "TOML"
    return "JSON"  # any other name, as before YAML and TOML were read


def readDocument(path: Union[str, os.PathLike[str]]) -> dict[str, Any]:
    """
    Read and decode a configuration file.

    @raise ConfigError: it cannot be read or decoded, or does not hold an object (one line each).
    """
    shown = repr(str(path))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config file {shown}: {e.strerror}") from None
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 BOM, as some editors write
        data = data[3:]
    kind = _format(str(path))
    document: Any
    if kind == "JSON":
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise ConfigError(f"cannot parse config file {shown}: {e.msg} at line {e.lineno} column {e.colno}") from None
    elif kind == "YAML":
        try:
            document = yaml.safe_load(data)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            raise ConfigError(f"cannot parse config file {shown}: {e.problem or e.context}{where}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"cannot parse config file {shown}: {' '.join(str(e).split())}") from None
    else:
        try:
            document = tomllib.loads(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ConfigError(f"cannot parse config file {shown}: not UTF-8 ({e.reason})") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"cannot parse config file {shown}: {e}") from None
    if not isinstance(document, dict):
        what = "a JSON object" if kind == "JSON" else f"a {kind} mapping"
        raise ConfigError(f"config file {shown} must hold {what}, got {_show(document)}")
    return document


def loadConfigFile(
    path: Union[str, os.PathLike[str]], environ: Optional[Mapping[str, str]] = None
) -> LoadedConfig:
    """
    Read a configuration file (v5 or v6 names) and apply Centrifugo's environment variables over it.

    @param environ: the environment (default C{os.environ}).
    @raise ConfigError: one line that names the key or variable.
    """
    document = readDocument(path)
    leaves, keyWarnings = documentLeaves(document)
    leaves, applied, envWarnings = applyEnvironment(leaves, os.environ if environ is None else environ)
    try:
        config = Config(**fieldsFromLeaves(leaves))
    except ConfigError as e:
        raise relabel(e) from None  # checks across values (namespaces, proxies) may name a variable
    return LoadedConfig(config.withHostName(), tuple(keyWarnings), tuple(envWarnings), tuple(applied))


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
