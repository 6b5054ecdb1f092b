# -*- test-case-name: tests.test_cli -*-
"""
The ``httpstream`` console script: Centrifugo's helper commands, with its names and flags.

``version``, ``checkconfig``, ``genconfig``, ``defaultconfig``, ``gentoken``, ``gensubtoken``, ``checktoken``,
``checksubtoken`` (each with ``-c/--config``, default ``config.json``), and ``serve``, which runs
``twistd -n httpstream`` (the server itself stays a twistd plugin). A failure is one line on stderr,
``httpstream: ...``, and exit status 1, as at start-up; bad usage is argparse's usage message and status 2.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import hashlib
import hmac
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn, Optional, Sequence, TextIO

import orjson

from httpstream.config import Config, ConfigError, LoadedConfig, read_config
from httpstream.config.write import UnsupportedFormat, configDocument, dumpDocument, formatOf, goDuration
from httpstream.version import versionText

__all__ = ["main"]

DEFAULT_CONFIG = "config.json"
DEFAULT_TOKEN_TTL = 7 * 24 * 3600  # Centrifugo's gentoken default: a week


class CommandError(Exception):
    """A command cannot do what was asked; the message is the one line the operator sees."""


# Configuration


def _read(path: str, environ: Mapping[str, str]) -> LoadedConfig:
    try:
        return read_config(path, environ)
    except ConfigError as e:
        raise CommandError(str(e)) from None


def _load(path: str, environ: Mapping[str, str]) -> tuple[Config, list[str]]:
    loaded = _read(path, environ)
    return loaded.config, loaded.warnings


def _checkStartable(config: Config) -> None:
    """Build the node's service as twistd would (nothing listens, nothing connects): its refusals are start-up's."""
    from twisted.internet.testing import MemoryReactorClock

    from httpstream.tap import HTTPStreamService

    try:
        HTTPStreamService(config, MemoryReactorClock())
    except ConfigError as e:
        raise CommandError(str(e)) from None


def _refuseExisting(path: Path) -> None:
    if path.exists():
        raise CommandError(f"output config file already exists: {path}")


def _format(path: Path) -> str:
    try:
        return formatOf(path)
    except UnsupportedFormat as e:
        raise CommandError(str(e)) from None


def _write(path: Path, data: bytes) -> None:
    try:
        # 0600 and never over an existing file (O_EXCL), as Centrifugo: the file holds secrets.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(f"output config file already exists: {path}") from None
    except OSError as e:
        raise CommandError(f"cannot write {path}: {e.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _secret(size: int = 64) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(size)).rstrip(b"=").decode("ascii")


def cmdCheckconfig(args: argparse.Namespace) -> int:
    loaded = _read(args.config, args.environ)
    _checkStartable(loaded.config)
    for warning in loaded.warnings:
        _say(args.stderr, f"warning: {warning}")
    # As Centrifugo's --strict: unknown keys of the file fail; unknown CENTRIFUGO_* variables stay warnings.
    if args.strict and loaded.unknown_keys:
        raise CommandError(f"{args.config} has {len(loaded.unknown_keys)} unknown key(s) (--strict)")
    return 0


def cmdGenconfig(args: argparse.Namespace) -> int:
    path = Path(args.config)
    format = _format(path)
    _refuseExisting(path)
    document = {
        "token_hmac_secret_key": _secret(),
        "api_key": _secret(),
        "allowed_origins": [],
        "http_stream": True,
        "sse": True,
    }
    _write(path, dumpDocument(document, format, v6=not args.v5))
    # As Centrifugo: what was written must load, or it is removed.
    try:
        config, _ = _load(str(path), args.environ)
        _checkStartable(config)
    except CommandError:
        path.unlink()
        raise
    _print(args, f"wrote {path}: fresh token_hmac_secret_key and api_key; http_stream and sse on, port {config.port}")
    return 0


def cmdDefaultconfig(args: argparse.Namespace) -> int:
    path = Path(args.config)
    format = _format(path)
    if not args.dry_run:
        _refuseExisting(path)
    config = _load(args.base, args.environ)[0] if args.base else Config()
    data = dumpDocument(configDocument(config), format, v6=not args.v5)
    if args.dry_run:
        args.stdout.write(data.decode("utf-8"))
    else:
        _write(path, data)
    return 0


# Tokens


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _hs256(claims: dict[str, Any], secret: str) -> str:
    # Not PyJWT: it refuses secrets that look like PEM or JWK text, and Centrifugo signs with any string's bytes.
    signingInput = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"})) + b"." + _b64(orjson.dumps(claims))
    signature = hmac.new(secret.encode("utf-8"), signingInput, hashlib.sha256).digest()
    return (signingInput + b"." + _b64(signature)).decode("ascii")


def _setClaim(claims: dict[str, Any], path: str, value: str) -> None:
    """Set a dotted claim path (C{token_user_id_claim} may name a nested one), making the objects on the way."""
    steps = path.split(".")
    for step in steps[:-1]:
        child = claims.get(step)
        if not isinstance(child, dict):
            child = claims[step] = {}
        claims = child
    claims[steps[-1]] = value


def _tokenKeys(config: Config, subscription: bool) -> str:
    """The prefix of the keys a token is checked with: C{subscription_token_} for a separately configured one."""
    return "subscription_token_" if subscription and config.separate_subscription_token_config else "token_"


def _hmacKey(config: Config, command: str, prefix: str) -> str:
    secret: str = getattr(config, f"{prefix}hmac_secret_key")
    if not secret:
        names = ("rsa_public_key", "ecdsa_public_key", "jwks_public_endpoint")
        others = [prefix + k for k in names if getattr(config, prefix + k)]
        why = f" (this config verifies with {' and '.join(others)})" if others else ""
        raise CommandError(
            f"{command} only makes HMAC (HS256) tokens and {prefix}hmac_secret_key (v6 "
            f"client.{prefix.rstrip('_')}.hmac_secret_key) is not set{why}; sign RSA/ECDSA tokens with your own tooling"
        )
    return secret


def _mint(config: Config, user: str, ttl: int, extra: dict[str, Any]) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user, "iat": now, **extra}
    if ttl > 0:
        claims["exp"] = now + ttl
    prefix = _tokenKeys(config, "channel" in extra)
    userIDClaim, audience, issuer = (getattr(config, prefix + k) for k in ("user_id_claim", "audience", "issuer"))
    if userIDClaim and userIDClaim != "sub":
        _setClaim(claims, userIDClaim, user)
    # A token this config's verifier accepts: its exact audience and issuer, when set.
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return _hs256(claims, _hmacKey(config, "gentoken" if "channel" not in extra else "gensubtoken", prefix))


def _describeTTL(ttl: int) -> str:
    return f"with expiration TTL {goDuration(ttl)}" if ttl > 0 else "without expiration"


def _who(user: str) -> str:
    return f'user "{user}"' if user else "anonymous user"


def cmdGentoken(args: argparse.Namespace) -> int:
    config, _ = _load(args.config, args.environ)
    token = _mint(config, args.user, args.ttl, {})
    if args.quiet:
        args.stdout.write(token)
    else:
        _print(args, f"HMAC SHA-256 JWT for {_who(args.user)} {_describeTTL(args.ttl)}:\n{token}")
    return 0


def cmdGensubtoken(args: argparse.Namespace) -> int:
    config, _ = _load(args.config, args.environ)
    if not args.channel:
        raise CommandError("channel is required (-s CHANNEL)")
    token = _mint(config, args.user, args.ttl, {"channel": args.channel})
    if args.quiet:
        args.stdout.write(token)
    else:
        who = f'{_who(args.user)} and channel "{args.channel}"'
        _print(args, f"HMAC SHA-256 JWT for {who} {_describeTTL(args.ttl)}:\n{token}")
    return 0


def _verifier(config: Config) -> Any:
    from httpstream.policy.tokens import TokenVerifier

    try:
        return TokenVerifier.fromConfig(config)
    except ConfigError as e:
        raise CommandError(str(e)) from None


def _payload(token: str) -> bytes:
    """The verified token's claims, compact (for the operator who pasted it: not a secret to them)."""
    segment = token.split(".")[1]
    return orjson.dumps(orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


def _expiry(expireAt: int) -> str:
    if not expireAt:
        return "without expiration"
    when = datetime.datetime.fromtimestamp(expireAt, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"expires at {when} (in {goDuration(max(expireAt - int(time.time()), 0))})"


def _check(args: argparse.Namespace, method: str) -> Any:
    from twisted.python.failure import Failure

    from httpstream.policy.tokens import InvalidToken, TokenExpired

    config, _ = _load(args.config, args.environ)
    verifier = _verifier(config)
    outcome: list[Any] = []
    # A JWKS key is fetched with the reactor (imported only then); other keys answer at once.
    from twisted.internet import reactor

    verified = getattr(verifier, method)(args.token, reactor).addBoth(outcome.append)
    if not outcome:
        verified.addBoth(lambda _: reactor.stop())
        reactor.run()
    result = outcome[0]
    if not isinstance(result, Failure):
        return result
    if isinstance(result.value, InvalidToken):
        raise CommandError(f"invalid token: {result.value}") from None
    if isinstance(result.value, TokenExpired):
        raise CommandError("token expired or not yet valid (its exp or nbf claim)") from None
    result.raiseException()


def cmdChecktoken(args: argparse.Namespace) -> int:
    claims = _check(args, "connectClaims")
    _print(args, f"valid token for {_who(claims.user)}, {_expiry(claims.expireAt)}")
    _print(args, f"payload: {_payload(args.token).decode('utf-8')}")
    return 0


def cmdChecksubtoken(args: argparse.Namespace) -> int:
    claims = _check(args, "subscribeClaims")
    who = f'{_who(claims.user)} and channel "{claims.channel}"'
    _print(args, f"valid subscription token for {who}, {_expiry(claims.expireAt)}")
    _print(args, f"payload: {_payload(args.token).decode('utf-8')}")
    return 0


def cmdVersion(args: argparse.Namespace) -> int:
    _print(args, versionText())
    return 0


def twistdCommand() -> list[str]:
    """twistd from the environment this script runs in, whatever PATH says."""
    script = Path(sys.executable).with_name("twistd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def cmdServe(args: argparse.Namespace) -> NoReturn:
    serve(args.options)


def serve(options: Sequence[str]) -> NoReturn:
    """Become C{twistd -n httpstream OPTIONS}: signals and the exit status are the server's own."""
    command = twistdCommand() + ["-n", "--pidfile=", "httpstream", *options]
    sys.stdout.flush()
    os.execv(command[0], command)


# The parser


def _withConfig(parser: argparse.ArgumentParser, help: str = "path to the config file") -> None:
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, metavar="FILE", help=f"{help} (default %(default)s)")


def _tokenOptions(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-u", "--user", default="", help="user ID (default: anonymous)")
    parser.add_argument(
        "-t", "--ttl", type=int, default=DEFAULT_TOKEN_TTL, metavar="SECONDS",
        help="token TTL in seconds, -1 for a token without expiration (default %(default)s)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the token")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="httpstream",
        description="Helper commands of httpstream, a Centrifugo-compatible real-time server. "
        "Run the server with `httpstream serve -c FILE` (or `twistd -n httpstream -c FILE`).",
    )
    top.add_argument("--version", action="version", version=versionText())
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, run: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    add("version", cmdVersion, "print httpstream's version")

    sub = add("checkconfig", cmdCheckconfig, "check a config file: exit 0 if the server would start with it")
    _withConfig(sub, "config file to check")
    sub.add_argument("-s", "--strict", action="store_true", help="also fail on unknown keys (any warning)")

    sub = add("genconfig", cmdGenconfig, "write a minimal working config with fresh random secrets")
    _withConfig(sub, "config file to write (.json, .yaml, .yml or .toml); never overwritten")
    sub.add_argument("--v5", action="store_true", help="Centrifugo v5's flat key names (default: v6's nested ones)")

    sub = add("defaultconfig", cmdDefaultconfig, "write every config key with its default value")
    _withConfig(sub, "config file to write (.json, .yaml, .yml or .toml, also for --dry-run); never overwritten")
    sub.add_argument("-b", "--base", default="", metavar="FILE", help="start from this config's values")
    sub.add_argument("-d", "--dry-run", action="store_true", help="print to stdout instead of writing a file")
    sub.add_argument("--v5", action="store_true", help="Centrifugo v5's flat key names (default: v6's nested ones)")

    sub = add("gentoken", cmdGentoken, "make a connection JWT (HS256, the config's token_hmac_secret_key)")
    _withConfig(sub)
    _tokenOptions(sub)

    sub = add("gensubtoken", cmdGensubtoken, "make a subscription JWT (HS256, the config's token_hmac_secret_key)")
    _withConfig(sub)
    _tokenOptions(sub)
    sub.add_argument("-s", "--channel", default="", help="channel (required)")

    sub = add("checktoken", cmdChecktoken, "verify a connection JWT with the config's keys")
    _withConfig(sub)
    sub.add_argument("token", metavar="TOKEN")

    sub = add("checksubtoken", cmdChecksubtoken, "verify a subscription JWT with the config's keys")
    _withConfig(sub)
    sub.add_argument("token", metavar="TOKEN")

    sub = add("serve", cmdServe, "run the server: twistd -n httpstream [OPTIONS] (e.g. -c FILE)")
    sub.add_argument("options", nargs=argparse.REMAINDER, metavar="OPTIONS", help="twistd httpstream's options")
    return top


def _say(stderr: TextIO, line: str) -> None:
    stderr.write(f"httpstream: {line}\n")


def _print(args: argparse.Namespace, line: str) -> None:
    args.stdout.write(f"{line}\n")


def main(
    argv: Optional[Sequence[str]] = None,
    stdout: Optional[TextIO] = None,
    stderr: Optional[TextIO] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> int:
    """
    The console script: run one command, return its exit status.

    @param argv: the arguments after the program name (default C{sys.argv[1:]}).
    @param stdout: where a command's output goes (default C{sys.stdout}).
    @param stderr: where the one-line errors, warnings and argparse's usage go (default C{sys.stderr}).
    @param environ: the environment the config is read with, C{CENTRIFUGO_*} included (default C{os.environ}).
        Relative paths are the current directory's, as for any command.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    if argv[:1] == ["serve"]:
        # Everything after "serve" is twistd httpstream's, --help included: argparse would claim "-c" and "-h".
        serve(argv[1:])
    try:
        # argparse writes its usage, help and --version to sys.stdout/sys.stderr and has no parameter for them.
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args = parser().parse_args(argv)
    except SystemExit as e:
        # Bad usage (2), or --help/--version (0): argparse's status, returned as every command's is.
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    args.stdout, args.stderr = stdout, stderr
    args.environ = os.environ if environ is None else environ
    try:
        status: int = args.run(args)
        return status
    except CommandError as e:
        _say(stderr, str(e))
        return 1
    except KeyboardInterrupt:
        return 130
