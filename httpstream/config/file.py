# -*- test-case-name: tests.test_config_v6 -*-
"""
Configuration files: JSON, YAML or TOML (chosen by the extension, as Centrifugo's viper does), then the
environment over them.
"""

from __future__ import annotations

import os
import tomllib
from typing import Any, Mapping, Optional, Union

import orjson
import yaml

from httpstream.config import LoadedConfig
from httpstream.config.options import Config
from httpstream.config.settings import ConfigError, _show
from httpstream.config.env import applyEnvironment, relabel
from httpstream.config.v6 import documentLeaves, fieldsFromLeaves

__all__ = ["loadConfigFile", "readDocument"]

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
