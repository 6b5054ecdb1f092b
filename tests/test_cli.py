"""
The ``httpstream`` console script: each command run as an operator runs it (in a scratch directory, on real files,
with the environment given), its output, its exit status, and its one-line errors.

The commands run in this process, through L{httpstream.cli.main}'s streams and environment; a few tests run the
installed console script itself (and twistd, which C{serve} becomes) to show that the real process behaves as
the in-process runs do.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import orjson
import pytest
import yaml
from twisted.internet.testing import MemoryReactorClock
from twisted.scripts.twistd import ServerOptions

import httpstream
from httpstream import tap
from httpstream.cli import main
from httpstream.config import Config, load_config
from httpstream.policy.tokens import TokenVerifier
from httpstream.testing import MemoryServer
from tests.serverprocess import ListeningProcess
from tests.web.helpers import connectStream as connectMemoryStream, openStream
from tests.wire import connectStream

SECRET = "cli-test-secret-0123456789abcdef0123456789"
RSA_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo
4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u
+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyeh
kd3qqGElvW/VDL5AaWTg0nLVkjRo9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ
0iT9wCS0DRTXu269V264Vf/3jvredZiKRkgwlL9xNAwxXFg0x/XFw005UWVRIkdg
cKWTjpBP2dPwVZ4WWC+9aGVd+Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbc
mwIDAQAB
-----END PUBLIC KEY-----"""


def httpstreamCommand() -> list[str]:
    """The console script pip installed beside this interpreter."""
    script = Path(sys.executable).with_name("httpstream")
    assert script.exists(), f"no console script at {script}: reinstall with pip install -e '.[test]'"
    return [str(script)]


def cleanEnv(**extra: str) -> dict[str, str]:
    """This process's environment without any CENTRIFUGO_* variable, plus C{extra}."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CENTRIFUGO_")}, **extra}


@dataclasses.dataclass(frozen=True)
class Result:
    """What an operator sees of one command: as L{subprocess.CompletedProcess}'s fields."""

    returncode: int
    stdout: str
    stderr: str


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """
    Run a command in this process, in C{cwd}; C{env} adds variables to L{cleanEnv}. An exception that escapes
    C{main} (what would be a traceback) fails the test.
    """
    stdout, stderr = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        status = main(list(args), stdout, stderr, cleanEnv(**(env or {})))
    finally:
        os.chdir(previous)
    return Result(status, stdout.getvalue(), stderr.getvalue())


def runScript(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script in its own process."""
    return subprocess.run(
        httpstreamCommand() + list(args), cwd=cwd, env=cleanEnv(), capture_output=True, text=True, timeout=60
    )


class Ran(Protocol):
    """What a run left, in process (L{Result}) or as a process (C{subprocess.CompletedProcess}): same fields."""

    returncode: int
    stdout: str
    stderr: str


def oneLineError(result: Ran, *expected: str) -> str:
    """Assert the command failed with exit 1 and exactly one line on stderr (containing C{expected}); return it."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("httpstream: "), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def writeConfig(directory: Path, document: dict[str, Any], name: str = "config.json") -> Path:
    path = directory / name
    path.write_text(json.dumps(document))
    return path


def claimsOf(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    return orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def hs256(claims: dict[str, Any], secret: str) -> str:
    """A token made independently of the code under test."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    head = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(orjson.dumps(claims))
    return (head + b"." + b64(hmac.new(secret.encode(), head, hashlib.sha256).digest())).decode()


# version


def test_consoleScriptRunsAsInProcess(tmp_path: Path) -> None:
    """The installed script: the in-process runs' output, exit statuses and one-line errors are its own."""
    result = runScript(tmp_path, "version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"httpstream v{httpstream.__version__} (Python ")
    # One source: the installed distribution's metadata is read from httpstream.__version__.
    assert metadata.version("httpstream") == httpstream.__version__
    assert run(tmp_path, "--version") == Result(0, result.stdout, "")
    assert run(tmp_path, "version") == Result(0, result.stdout, "")
    usage = runScript(tmp_path, "nosuchcommand")
    assert usage.returncode == 2 and "usage: httpstream" in usage.stderr
    assert run(tmp_path, "nosuchcommand") == Result(2, "", usage.stderr)
    refused = runScript(tmp_path, "checkconfig", "-c", "absent.json")
    assert oneLineError(refused, "cannot read config file") == oneLineError(run(tmp_path, "checkconfig", "-c",
                                                                                "absent.json"))


def twistdOptions(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Parse twistd's command line in this process, as twistd does (its plugins found the same way)."""
    with pytest.raises(SystemExit) as exited:
        ServerOptions().parseOptions(list(args))
    return exited.value.code, capsys.readouterr().out  # type: ignore[return-value]


def test_twistdPluginVersionIsHttpstreams(capsys: pytest.CaptureFixture[str]) -> None:
    status, out = twistdOptions(capsys, "httpstream", "--version")
    assert status == 0
    assert out.startswith(f"httpstream v{httpstream.__version__} ")


def test_twistdHelpPointsAtAnExampleThatExists(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = twistdOptions(capsys, "httpstream", "--help")
    text = " ".join(out.split())
    assert "httpstream genconfig" in text
    shipped = Path(text.split("Example config: ")[1].split()[0])
    config, warnings = load_config(shipped, environ={})
    assert warnings == [] and config.http_stream


# Usage errors: argparse's usage line and status 2, never a traceback.


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("nosuchcommand",),
        ("gentoken", "-t", "soon"),
        ("checktoken",),
        ("checkconfig", "--nosuchflag"),
    ],
)
def test_badUsageIsUsageAndExit2(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run(tmp_path, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "usage: httpstream" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# checkconfig


def test_checkconfigAcceptsAGoodConfigSilently(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    writeConfig(tmp_path, {"token_hmac_secret_key": SECRET, "http_stream": True})
    result = run(tmp_path, "checkconfig")  # -c defaults to config.json, as Centrifugo's
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    # Nor did building the node print anything past main's streams (a log line, a warning).
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize(
    "document,expected",
    [
        ({"port": "eighty"}, '"port"'),
        ({"ping_interval": "5s", "pong_timeout": "8s"}, "pong_timeout"),
        ({"engine": "cassandra"}, '"engine"'),
        # Not refused by the file's reader: by the token verifier and TLS set-up, when the server is built.
        ({"token_rsa_public_key": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"}, "rsa_public_key"),
        ({"tls": True, "tls_cert": "absent.pem", "tls_key": "absent.key"}, '"tls_cert"'),
    ],
)
def test_checkconfigRefusesWithStartupsLine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: dict[str, Any], expected: str
) -> None:
    path = writeConfig(tmp_path, document)
    line = oneLineError(run(tmp_path, "checkconfig", "-c", str(path)), expected)
    # Start-up as twistd runs it (its options, then makeService), in this process: the same line, exit 1.
    # tests/test_tap.py shows the real twistd process printing that line and exiting 1.
    with pytest.raises(SystemExit) as exited:
        options = tap.Options()
        options.parseOptions(["-c", str(path)])
        tap.makeService(options, MemoryReactorClock())
    assert exited.value.code == 1
    assert capsys.readouterr().err.strip() == line


def test_checkconfigMissingOrUnparsableFile(tmp_path: Path) -> None:
    oneLineError(run(tmp_path, "checkconfig", "-c", "absent.json"), "cannot read config file", "absent.json")
    (tmp_path / "broken.json").write_text("{not json")
    oneLineError(run(tmp_path, "checkconfig", "-c", "broken.json"), "cannot parse config file")


def test_checkconfigWarnsOnUnknownKeysAndStrictRefuses(tmp_path: Path) -> None:
    writeConfig(tmp_path, {"http_stream": True, "no_such_key": 1})
    lenient = run(tmp_path, "checkconfig")
    assert lenient.returncode == 0
    assert lenient.stderr.strip() == 'httpstream: warning: config key "no_such_key" is unknown and was ignored'
    for flag in ("--strict", "-s"):
        strict = run(tmp_path, "checkconfig", flag)
        assert strict.returncode == 1
        assert 'config key "no_such_key" is unknown' in strict.stderr
        assert strict.stderr.strip().splitlines()[-1] == "httpstream: config.json has 1 unknown key(s) (--strict)"
        assert "Traceback" not in strict.stderr


def test_checkconfigReadsTheEnvironmentAsTheServerDoes(tmp_path: Path) -> None:
    writeConfig(tmp_path, {"http_stream": True})
    oneLineError(run(tmp_path, "checkconfig", env={"CENTRIFUGO_HTTP_SERVER_PORT": "eighty"}),
                 "CENTRIFUGO_HTTP_SERVER_PORT")
    # An unknown variable is a warning; --strict refuses only the file's unknown keys, as Centrifugo's.
    result = run(tmp_path, "checkconfig", "--strict", env={"CENTRIFUGO_NO_SUCH_SETTING": "1"})
    assert result.returncode == 0, result.stderr
    assert "CENTRIFUGO_NO_SUCH_SETTING" in result.stderr and "warning" in result.stderr


# genconfig


def test_genconfigWritesFreshSecretsPrivately(tmp_path: Path) -> None:
    first = run(tmp_path, "genconfig")
    assert first.returncode == 0, first.stderr
    path = tmp_path / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Centrifugo 6's nested names, as its genconfig writes them.
    document = json.loads(path.read_text())
    assert set(document) == {"client", "http_api", "http_stream", "sse"}
    assert document["client"]["allowed_origins"] == []
    config, warnings = load_config(path, environ={})
    assert warnings == []
    assert config.http_stream and config.sse
    assert document["client"]["token"]["hmac_secret_key"] == config.token_hmac_secret_key
    assert document["http_api"]["key"] == config.api_key
    assert len(config.token_hmac_secret_key) >= 64 and len(config.api_key) >= 64
    assert config.token_hmac_secret_key != config.api_key
    assert config.token_hmac_secret_key not in first.stdout + first.stderr
    second = run(tmp_path, "genconfig", "-c", "other.json")
    assert second.returncode == 0, second.stderr
    other, _ = load_config(tmp_path / "other.json", environ={})
    assert other.token_hmac_secret_key != config.token_hmac_secret_key
    assert other.api_key != config.api_key


@pytest.mark.parametrize("name", ["config.yaml", "config.yml", "config.toml"])
def test_genconfigWritesYAMLAndTOML(tmp_path: Path, name: str) -> None:
    result = run(tmp_path, "genconfig", "-c", name)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / name).read_text()
    parsed = tomllib.loads(text) if name.endswith(".toml") else yaml.safe_load(text)
    config, warnings = load_config(tmp_path / name, environ={})
    assert warnings == [] and config.http_stream and config.sse
    assert parsed["client"]["token"]["hmac_secret_key"] == config.token_hmac_secret_key
    assert run(tmp_path, "checkconfig", "--strict", "-c", name).returncode == 0


def test_genconfigV5Names(tmp_path: Path) -> None:
    assert run(tmp_path, "genconfig", "--v5").returncode == 0
    document = json.loads((tmp_path / "config.json").read_text())
    config, _ = load_config(tmp_path / "config.json", environ={})
    assert document == {
        "token_hmac_secret_key": config.token_hmac_secret_key, "api_key": config.api_key, "allowed_origins": [],
        "http_stream": True, "sse": True,
    }


def test_genconfigNeverOverwrites(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"port": 9000}')
    oneLineError(run(tmp_path, "genconfig"), "already exists")
    assert path.read_text() == '{"port": 9000}'


def test_genconfigUnwritableOrWrongExtension(tmp_path: Path) -> None:
    oneLineError(run(tmp_path, "genconfig", "-c", "missing-dir/config.json"), "cannot write")
    oneLineError(run(tmp_path, "genconfig", "-c", "config.txt"), ".json, .yaml, .yml, .toml")
    assert not (tmp_path / "config.txt").exists()


def test_genconfigAndGentokenMakeAWorkingServer(tmp_path: Path) -> None:
    """
    The generated config makes a server that verifies gentoken's JWT: its token connects over http_stream as its
    user (the server API, with the generated api_key, disconnects that user), a forged one is refused. (The server
    is built from the file as twistd builds it, in memory; test_serveRunsTwistdHttpstream runs the real one.)
    """
    assert run(tmp_path, "genconfig").returncode == 0
    path = tmp_path / "config.json"
    document = json.loads(path.read_text())
    token = run(tmp_path, "gentoken", "-u", "alice", "-q").stdout
    options = tap.Options()
    options.parseOptions(["-c", str(path)])
    with MemoryServer(options.config) as server:
        forged = openStream(
            server, orjson.dumps({"id": 1, "connect": {"token": hs256({"sub": "alice"},
                                                                       "wrong-secret-0123456789abcdef01234")}})
        )
        assert forged.received()[0] == {"push": {"disconnect": {"code": 3500, "reason": "invalid token"}}}
        forged.close()
        stream, result = connectMemoryStream(server, token=token)
        assert result["client"]
        apiKey = document["http_api"]["key"]
        answer = server.request(
            "POST", "/api/disconnect", {"X-API-Key": apiKey, "Content-Type": "application/json"},
            orjson.dumps({"user": "alice"}),
        )
        assert answer.status == 200 and orjson.loads(answer.body) == {"result": {}}
        assert any("disconnect" in message.get("push", {}) for message in stream.received()), stream.received()
        assert stream.response.complete  # the stream ended


# defaultconfig


def test_defaultconfigDryRunIsEveryKeyWithItsDefault(tmp_path: Path) -> None:
    result = run(tmp_path, "defaultconfig", "--dry-run", "--v5")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {f.name for f in dataclasses.fields(Config)}
    assert document["port"] == 8000 and document["ping_interval"] == "25s"
    assert document["global_history_meta_ttl"] == "720h0m0s"
    assert not (tmp_path / "config.json").exists()
    path = writeConfig(tmp_path, document, "defaults.json")
    config, warnings = load_config(path, environ={})
    assert warnings == []
    assert config == dataclasses.replace(Config(), name=config.name)


@pytest.mark.parametrize("name", ["defaults.json", "defaults.yaml", "defaults.toml"])
def test_defaultconfigV6ReadsBackToTheDefaults(tmp_path: Path, name: str) -> None:
    dry = run(tmp_path, "defaultconfig", "-d", "-c", name)
    assert dry.returncode == 0, dry.stderr
    assert not (tmp_path / name).exists()
    assert run(tmp_path, "defaultconfig", "-c", name).returncode == 0
    text = (tmp_path / name).read_text()
    assert text == dry.stdout
    parsed = {".json": json.loads, ".toml": tomllib.loads, ".yaml": yaml.safe_load}[Path(name).suffix](text)
    assert parsed["http_server"]["port"] == 8000 and parsed["client"]["ping_interval"] == "25s"
    config, warnings = load_config(tmp_path / name, environ={})
    assert warnings == []
    assert config == dataclasses.replace(Config(), name=config.name)


@pytest.mark.parametrize("name", ["full.json", "full.yaml", "full.toml"])
def test_defaultconfigWritesAFileOnceAndFollowsABase(tmp_path: Path, name: str) -> None:
    base = writeConfig(
        tmp_path,
        {
            "http_stream": True,
            "history_meta_ttl": "90m",
            "allowed_origins": ["https://*.example.com"],
            "proxy_connect_endpoint": "http://127.0.0.1:9/connect",
            "namespaces": [{"name": "news", "history_size": 10, "history_ttl": "1.5s", "presence": True}],
        },
        "base.json",
    )
    result = run(tmp_path, "defaultconfig", "-b", str(base), "-c", name)
    assert result.returncode == 0, result.stderr
    assert load_config(tmp_path / name, environ={}) == load_config(base, environ={})
    assert run(tmp_path, "checkconfig", "-s", "-c", name).returncode == 0
    oneLineError(run(tmp_path, "defaultconfig", "-c", name), "already exists")
    oneLineError(run(tmp_path, "defaultconfig", "-b", "absent.json", "-d"), "cannot read config file")


def test_defaultconfigV5FollowsABase(tmp_path: Path) -> None:
    base = writeConfig(tmp_path, {"history_meta_ttl": "90m", "namespaces": [{"name": "news", "history_size": 10,
                                                                             "history_ttl": "1.5s"}]}, "base.json")
    assert run(tmp_path, "defaultconfig", "--v5", "-b", str(base), "-c", "full.json").returncode == 0
    full = json.loads((tmp_path / "full.json").read_text())
    assert full["namespaces"][0]["history_ttl"] == "1.5s" and full["history_meta_ttl"] == "1h30m0s"


# gentoken / gensubtoken


def test_gentokenSignsWithTheConfigsKey(tmp_path: Path) -> None:
    writeConfig(tmp_path, {"token_hmac_secret_key": SECRET})
    before = time.time()
    result = run(tmp_path, "gentoken", "-u", "alice", "-t", "120")
    assert result.returncode == 0, result.stderr
    heading, token = result.stdout.strip().splitlines()
    assert heading == 'HMAC SHA-256 JWT for user "alice" with expiration TTL 2m0s:'
    claims = TokenVerifier(SECRET).verifyConnect(token, time.time())
    assert claims.user == "alice"
    assert before + 119 <= claims.expireAt <= time.time() + 121
    with pytest.raises(Exception):
        TokenVerifier("another-secret-0123456789abcdef012345").verifyConnect(token, time.time())


def test_gentokenAnonymousWithoutExpiration(tmp_path: Path) -> None:
    writeConfig(tmp_path, {"token_hmac_secret_key": SECRET})
    result = run(tmp_path, "gentoken", "--ttl", "-1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "\n" not in result.stdout
    claims = claimsOf(result.stdout)
    assert claims["sub"] == "" and "exp" not in claims
    assert TokenVerifier(SECRET).verifyConnect(result.stdout, time.time() + 10**8).user == ""


def test_gentokenFollowsTheConfigsClaimRules(tmp_path: Path) -> None:
    document = {
        "token_hmac_secret_key": SECRET,
        "token_user_id_claim": "user.id",
        "token_audience": "chat-app",
        "token_issuer": "auth.example",
    }
    writeConfig(tmp_path, document)
    token = run(tmp_path, "gentoken", "-u", "bob", "-q").stdout
    verifier = TokenVerifier(
        SECRET, audience="chat-app", issuer="auth.example", userIDClaim="user.id"
    )
    assert verifier.verifyConnect(token, time.time()).user == "bob"
    assert run(tmp_path, "checktoken", token).returncode == 0


def test_gentokenRefusesWithoutAnHMACKey(tmp_path: Path) -> None:
    writeConfig(tmp_path, {"token_rsa_public_key": RSA_PUBLIC_KEY}, "rsa.json")
    line = oneLineError(run(tmp_path, "gentoken", "-c", "rsa.json", "-u", "x"), "token_hmac_secret_key", "RSA/ECDSA")
    assert "token_rsa_public_key" in line
    oneLineError(run(tmp_path, "gensubtoken", "-c", "rsa.json", "-u", "x", "-s", "ch"), "token_hmac_secret_key")
    writeConfig(tmp_path, {}, "empty.json")
    oneLineError(run(tmp_path, "gentoken", "-c", "empty.json"), "token_hmac_secret_key")


def test_gensubtokenSignsAChannelToken(tmp_path: Path) -> None:
    writeConfig(tmp_path, {"token_hmac_secret_key": SECRET})
    result = run(tmp_path, "gensubtoken", "-u", "alice", "-s", "$private:room", "-t", "3600")
    assert result.returncode == 0, result.stderr
    heading, token = result.stdout.strip().splitlines()
    assert heading == 'HMAC SHA-256 JWT for user "alice" and channel "$private:room" with expiration TTL 1h0m0s:'
    claims = TokenVerifier(SECRET).verifySubscribe(token, time.time())
    assert (claims.user, claims.channel) == ("alice", "$private:room")
    oneLineError(run(tmp_path, "gensubtoken", "-u", "alice"), "channel is required")


# checktoken / checksubtoken


def test_checktokenPrintsUserAndExpiry(tmp_path: Path) -> None:
    writeConfig(tmp_path, {"token_hmac_secret_key": SECRET})
    exp = int(time.time()) + 3600
    token = hs256({"sub": "carol", "exp": exp, "info": {"role": "admin"}}, SECRET)
    result = run(tmp_path, "checktoken", token)
    assert result.returncode == 0, result.stderr
    first, payload = result.stdout.strip().splitlines()
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))
    assert first.startswith(f'valid token for user "carol", expires at {when} (in ')
    assert json.loads(payload.removeprefix("payload: ")) == {"sub": "carol", "exp": exp, "info": {"role": "admin"}}
    forever = run(tmp_path, "checktoken", hs256({"sub": ""}, SECRET))
    assert forever.stdout.startswith("valid token for anonymous user, without expiration\n")


@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda: hs256({"sub": "carol"}, "some-other-secret-0123456789abcdef01"), "signature verification failed"),
        (lambda: hs256({"sub": "carol", "exp": int(time.time()) - 10}, SECRET), "expired"),
        (lambda: hs256({"sub": "carol", "channel": "news"}, SECRET), "channel claim"),
        (lambda: "not-a-jwt", "malformed"),
    ],
)
def test_checktokenRefusesWithAReason(tmp_path: Path, make: Any, expected: str) -> None:
    writeConfig(tmp_path, {"token_hmac_secret_key": SECRET})
    token = make()
    line = oneLineError(run(tmp_path, "checktoken", token), expected)
    assert token not in line


def test_checksubtoken(tmp_path: Path) -> None:
    writeConfig(tmp_path, {"token_hmac_secret_key": SECRET})
    token = hs256({"sub": "dave", "channel": "$room", "exp": int(time.time()) + 60}, SECRET)
    result = run(tmp_path, "checksubtoken", "-c", "config.json", token)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('valid subscription token for user "dave" and channel "$room", expires at ')
    oneLineError(run(tmp_path, "checksubtoken", hs256({"sub": "dave"}, SECRET)), "channel claim")
    oneLineError(run(tmp_path, "checksubtoken", token + "x"), "invalid token")


def test_checktokenWithAnRSAConfig(tmp_path: Path) -> None:
    # An HS256 token against a config with only an RSA key: refused (the algorithm is not enabled).
    writeConfig(tmp_path, {"token_rsa_public_key": RSA_PUBLIC_KEY})
    oneLineError(run(tmp_path, "checktoken", hs256({"sub": "x"}, SECRET)), "algorithm")


# serve


def test_serveRunsTwistdHttpstream(tmp_path: Path) -> None:
    path = writeConfig(tmp_path, {"address": "127.0.0.1", "port": 0, "http_stream": True,
                                  "allow_anonymous_connect_without_token": True})
    with ListeningProcess(httpstreamCommand() + ["serve", "-c", str(path)], cwd=tmp_path, env=cleanEnv()) as server:
        server.waitForPort(timeout=60)
        stream, result = connectStream(server.port)
        stream.close()
        assert result["client"]
        # The script became twistd (exec: same process), which ends a SIGTERM'd clean stop by re-raising it.
        assert "twistd" in Path(f"/proc/{server.pid}/cmdline").read_bytes().decode()
        assert server.stop() == -signal.SIGTERM
    assert not (tmp_path / "twistd.pid").exists()


def test_serveBadConfigIsStartupsError(tmp_path: Path) -> None:
    oneLineError(runScript(tmp_path, "serve", "-c", "absent.json"), "cannot read config file")


def test_checkconfigNeverPrintsSecrets(tmp_path: Path) -> None:
    writeConfig(tmp_path, {"token_hmac_secret_key": SECRET, "api_key": "api-key-" + "9" * 30, "x": 1})
    result = run(tmp_path, "checkconfig")
    assert SECRET not in result.stdout + result.stderr and "9" * 30 not in result.stdout + result.stderr


# In memory: the pieces the commands are made of.


@pytest.mark.parametrize(
    "seconds,text",
    [
        (0, "0s"), (25, "25s"), (0.5, "500ms"), (0.000001, "1us"), (1.5, "1.5s"), (90, "1m30s"),
        (3600, "1h0m0s"), (604800, "168h0m0s"), (2592000, "720h0m0s"), (-1, "-1s"),
    ],
)
def test_goDurationWritesWhatGoWritesAndTheReaderParses(seconds: float, text: str) -> None:
    from httpstream.config.write import goDuration
    from httpstream.config.durations import parse_duration

    assert goDuration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


def test_nestedUserIDClaim() -> None:
    from httpstream.cli import _setClaim

    claims: dict[str, Any] = {"sub": "x", "user": "not an object"}
    _setClaim(claims, "user.profile.id", "42")
    assert claims == {"sub": "x", "user": {"profile": {"id": "42"}}}


def test_checktokenWithJWKS(tmp_path: Path) -> None:
    """With token_jwks_public_endpoint, checktoken fetches the token's key (its own process: it runs a reactor)."""
    from tests.jwksserver import JWKSServer
    from tests.policy.jwkshelpers import RSA_A, jwk, keySet, signed

    endpoint = JWKSServer([keySet(jwk(RSA_A, "A"))])
    try:
        writeConfig(tmp_path, {"token_jwks_public_endpoint": endpoint.url})
        good = runScript(tmp_path, "checktoken", signed({"sub": "dave"}, RSA_A, "A"))
        assert good.returncode == 0, good.stderr
        assert good.stdout.startswith('valid token for user "dave", without expiration\n')
        oneLineError(runScript(tmp_path, "checktoken", signed({"sub": "dave"}, RSA_A, "B")), "public key not found")
    finally:
        endpoint.close()


def test_gensubtokenWithSeparateConfig(tmp_path: Path) -> None:
    """With separate_subscription_token_config, gensubtoken signs with the subscription token key and claims."""
    other = "a-subscription-secret-0123456789abcdef0123"
    writeConfig(tmp_path, {"token_hmac_secret_key": SECRET, "separate_subscription_token_config": True,
                           "subscription_token_hmac_secret_key": other, "subscription_token_audience": "subs"})
    result = run(tmp_path, "gensubtoken", "-u", "erin", "-s", "news", "-q")
    assert result.returncode == 0, result.stderr
    assert claimsOf(result.stdout)["aud"] == "subs"
    assert run(tmp_path, "checksubtoken", result.stdout).returncode == 0
    writeConfig(tmp_path, {"token_hmac_secret_key": SECRET, "subscription_token_hmac_secret_key": other})
    oneLineError(run(tmp_path, "checksubtoken", result.stdout), "invalid token")
