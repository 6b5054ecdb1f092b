# -*- test-case-name: tests.test_cli -*-
"""
Writing configuration files, as ``httpstream genconfig`` and ``defaultconfig`` do: a L{Config} (or a document of
v5 keys) as a JSON, YAML or TOML file (by the file's extension, as Centrifugo's commands choose), with Centrifugo
v6's nested names (Centrifugo 6 writes those) or v5's flat ones. Whatever is written reads back to the same
configuration through L{httpstream.config.load_config}.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Mapping, get_type_hints

import orjson
import yaml

from httpstream.config.options import ChannelOptions, Config, Namespace
from httpstream.config.settings import Duration
from httpstream.config.v6 import v6Document

__all__ = ["FORMATS", "configDocument", "dumpDocument", "formatOf", "goDuration"]

#: Extension -> format, as Centrifugo's genconfig/defaultconfig accept them.
FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}


class UnsupportedFormat(ValueError):
    """The file's extension names no format this module writes."""


def formatOf(path: str | os.PathLike[str]) -> str:
    """C{"json"}, C{"yaml"} or C{"toml"} for C{path}'s extension. @raise UnsupportedFormat: any other."""
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension not in FORMATS:
        raise UnsupportedFormat(f"output config file must end in one of {', '.join(FORMATS)}: {os.fspath(path)}")
    return FORMATS[extension]


def goDuration(seconds: float) -> str:
    """Seconds as Go writes a time.Duration ("720h0m0s", "25s", "500ms"), which every config reader parses."""
    nanoseconds = round(seconds * 1e9)
    if nanoseconds == 0:
        return "0s"
    sign, nanoseconds = ("-", -nanoseconds) if nanoseconds < 0 else ("", nanoseconds)
    if nanoseconds < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("us", 1_000), ("ns", 1)):
            if nanoseconds >= size or unit == "ns":
                return f"{sign}{nanoseconds / size:g}{unit}"
    hours, rest = divmod(nanoseconds, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secondsText = f"{rest / 1e9:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secondsText}"
    if minutes:
        return f"{sign}{minutes}m{secondsText}"
    return sign + secondsText


def _plain(value: Any, isDuration: bool = False) -> Any:
    if isDuration:
        return goDuration(value)
    if isinstance(value, Namespace):
        return {"name": value.name, **_settings(value.options, ChannelOptions)}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _settings(value, type(value))
    return value


def _settings(instance: Any, cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls, include_extras=True)
    return {f.name: _plain(getattr(instance, f.name), hints[f.name] == Duration) for f in dataclasses.fields(cls)}


def configDocument(config: Config) -> dict[str, Any]:
    """
    Every key of C{config} with its value, by v5 name: the server's own keys first, then the channel options of
    channels without a namespace (fields L{Config} inherits, so listed first by dataclasses).
    """
    document = _settings(config, Config)
    channelOptions = {f.name for f in dataclasses.fields(ChannelOptions)}
    return {
        **{k: v for k, v in document.items() if k not in channelOptions},
        **{k: v for k, v in document.items() if k in channelOptions},
    }


def dumpDocument(document: Mapping[str, Any], format: str, v6: bool = True) -> bytes:
    """
    A document of v5 keys as the bytes of a C{format} file, nested by v6 path when C{v6}.
    """
    if v6:
        document = v6Document(document)
    if format == "json":
        return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
    if format == "yaml":
        # allow_unicode=False: PyYAML writes some line-break characters (NEL) raw and reads them back as spaces.
        return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=False).encode("utf-8")
    if format == "toml":
        lines: list[str] = []
        _tomlTable(document, (), lines)
        return "\n".join(lines).lstrip("\n").encode("utf-8") + b"\n"
    raise UnsupportedFormat(format)


# TOML: the standard library reads it (tomllib) but has no writer; config documents need only this much of it.

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _tomlString(text: str) -> str:
    # A JSON string is a TOML basic string (the same escapes; orjson writes no "\/"), except that TOML also
    # refuses a raw DEL.
    return orjson.dumps(text).decode("utf-8").replace("\x7f", "\\u007f")


def _tomlKey(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _tomlString(key)


def _tomlValue(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _tomlString(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_tomlValue(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_tomlKey(k)} = {_tomlValue(v)}" for k, v in value.items()) + "}"
    raise UnsupportedFormat(f"TOML cannot hold {value!r}")


def _isTableArray(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(item, Mapping) for item in value)


def _tomlTable(table: Mapping[str, Any], path: tuple[str, ...], lines: list[str]) -> None:
    # A table's own keys come before its sub-tables: after a [header] every key belongs to that header.
    for key, value in table.items():
        if not isinstance(value, Mapping) and not _isTableArray(value):
            lines.append(f"{_tomlKey(key)} = {_tomlValue(value)}")
    for key, value in table.items():
        name = ".".join(_tomlKey(part) for part in (*path, key))
        if isinstance(value, Mapping):
            lines.extend(("", f"[{name}]"))
            _tomlTable(value, (*path, key), lines)
        elif _isTableArray(value):
            for item in value:
                lines.extend(("", f"[[{name}]]"))
                _tomlTable(item, (*path, key), lines)
