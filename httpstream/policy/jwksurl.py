# -*- test-case-name: tests.policy.test_jwks -*-
"""
The JWKS endpoint URL as a template, as Centrifugo v6 fills it (C{fasttemplate} with C{{{name}}} tags): each
C{{{name}}} becomes the named group C{name} of C{token_issuer_regex} or C{token_audience_regex} in the token's
C{iss} or C{aud} (audience wins when both have it; a missing one becomes ""), so tenants can have their own keys::

    token_issuer_regex: "https://auth.example.com/(?P<tenant>acme|globex)"
    token_jwks_public_endpoint: "https://auth.example.com/{{tenant}}/.well-known/jwks.json"

The values come from a token whose signature is not yet checked, so a group used in the URL must be an explicit
list of fixed values (Centrifugo's safety check, C{internal/jwtverify/validate.go}): otherwise a made-up token would
choose where the keys are fetched from. C{token_insecure_skip_jwks_endpoint_safety_check} lets a configuration
without such a list start, with a warning. A filled URL whose path is not clean (C{..}, C{//}, a trailing C{/}: Go's
C{path.Clean} would change it) is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from httpstream.config import ConfigError
from httpstream.logs import Logger
from httpstream.policy.jwtverify import InvalidToken

__all__ = ["JWKSEndpoint", "goCleanPath"]

log = Logger()

_TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_CLASS_SHORTHAND = re.compile(r"\\[dDwWsSpP]")
# A character that means something in a regular expression, so is not a literal when unescaped.
_META = set(".^$*+?{}[]\\|()")


class JWKSEndpoint:
    """A configured JWKS endpoint: its template, and the URL it gives for a token's values."""

    def __init__(self, template: str, configKey: str = "token_jwks_public_endpoint", *, issuerRegex: str = "",
                 audienceRegex: str = "", skipSafetyCheck: bool = False) -> None:
        """
        @param configKey: the key named in errors (C{subscription_token_jwks_public_endpoint} for the other one).
        @raise ConfigError: not an http(s) URL, a C{{{} without C{}}}, an unsafe group (unless skipped), or, without
            tags, a path that is not clean (every fetch would be refused).
        """
        if not template.startswith(("http://", "https://")):
            raise ConfigError(f'config key "{configKey}": expected an http:// or https:// URL')
        self.template = template
        self.placeholders = tuple(_TAG.findall(template))
        if "{{" in _TAG.sub("", template):
            raise ConfigError(f'config key "{configKey}": a "{{{{" without its "}}}}"')
        if not self.placeholders and not _cleanPath(template):
            raise ConfigError(f'config key "{configKey}": the URL path must be clean (no "..", "//" or trailing "/")')
        for name, pattern in (("issuer_regex", issuerRegex), ("audience_regex", audienceRegex)):
            problem = _unsafe(pattern, set(self.placeholders))
            if problem is None:
                continue
            message = f"token {name} {problem}: use an explicit list of allowed values (e.g. value1|value2|value3)"
            if not skipSafetyCheck:
                raise ConfigError(f'config key "{configKey}": {message}')
            log.warn("JWKS endpoint template safety check skipped, which is INSECURE: {message}", message=message)

    def resolve(self, variables: Mapping[str, str]) -> str:
        """
        The URL for a token's values.

        @raise InvalidToken: the filled URL's path is not clean.
        """
        url = _TAG.sub(lambda match: variables.get(match.group(1), ""), self.template)
        if not _cleanPath(url):
            raise InvalidToken("JWKS URL path contains traversal sequences")
        return url


def _cleanPath(url: str) -> bool:
    try:
        path = unquote(urlsplit(url).path)
    except ValueError:
        return False
    return not path or goCleanPath(path) == path


def goCleanPath(path: str) -> str:
    """Go's C{path.Clean}: the shortest equivalent path (no C{.}, C{..} resolved, no repeated or trailing C{/})."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def _unsafe(pattern: str, placeholders: set[str]) -> str | None:
    """Why C{pattern} may put values of a token's choosing into the URL, or None when it cannot."""
    if not pattern or not placeholders:
        return None
    if "[" in pattern.replace("\\[", ""):
        return "contains character class syntax, which is not allowed when the JWKS endpoint URL is a template"
    if _CLASS_SHORTHAND.search(pattern.replace("\\\\", "")):
        return "contains a character class shorthand, which is not allowed when the JWKS endpoint URL is a template"
    for match in re.finditer(r"\(\?P<(\w+)>", pattern):
        name = match.group(1)
        if name in placeholders and not _literalAlternatives(pattern, match.end()):
            return f'named group "{name}" is used in the JWKS endpoint URL template'
    return None


def _literalAlternatives(pattern: str, start: int) -> bool:
    """
    Whether the group whose body starts at C{start} matches only a finite list of fixed strings: literals,
    escaped punctuation, C{|} and groups of the same (Go's C{isLiteralTree}; flags and repetition are refused).
    """
    depth, index = 0, start
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            escaped = pattern[index + 1:index + 2]
            if not escaped or escaped.isalnum():
                return False  # \d, \b, \1...: classes, anchors, references
            index += 2
            continue
        if char == "(":
            if pattern.startswith("(?:", index):
                index += 3
            elif pattern.startswith("(?P<", index):
                index = pattern.index(">", index) + 1
            elif pattern.startswith("(?", index):
                return False  # flags, look-arounds
            else:
                index += 1
            depth += 1
            continue
        if char == ")":
            if depth == 0:
                return True
            depth -= 1
        elif char != "|" and char in _META:
            return False
        index += 1
    return False
