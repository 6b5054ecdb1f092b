# -*- test-case-name: tests.web.test_tls -*-
"""
TLS for the client-facing port: https and wss on the same port as Centrifugo's ``tls``/``tls_cert``/``tls_key``.

Certificates and keys are given as Centrifugo 6 accepts a PEM value: the PEM text itself, base64 of it, or a file
path, tried in that order (v5's ``tls_cert``/``tls_key`` were paths, its ``*_pem`` keys PEM text; both work).
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from httpstream.config import Config, ConfigError

_PEM_START = b"-----BEGIN "


def readPEM(key: str, value: str) -> bytes:
    """
    The PEM bytes C{value} stands for (PEM, base64 of PEM, or a path). @raise ConfigError: one line naming C{key},
    never the value (it may be a private key).
    """
    raw = value.strip().encode("utf-8", "replace")
    if raw.startswith(_PEM_START):
        return raw
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if decoded.lstrip().startswith(_PEM_START):
        return decoded
    path = os.path.expanduser(value)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f'config key "{key}": cannot read {value!r}: {e.strerror or e}') from None
    if _PEM_START not in data:
        raise ConfigError(f'config key "{key}": {value!r} holds no PEM data')
    return data


def serverTLSOptions(config: Config) -> Any:
    """
    The server-side TLS options of C{config} (TLS 1.2 or newer, as Centrifugo), or None when C{tls} is off.

    @raise ConfigError: a certificate or key that is missing, unreadable, or not a matching pair.
    """
    if not config.tls:
        return None
    certKey = "tls_cert_pem" if config.tls_cert_pem else "tls_cert"
    keyKey = "tls_key_pem" if config.tls_key_pem else "tls_key"
    certValue, keyValue = getattr(config, certKey), getattr(config, keyKey)
    if not certValue or not keyValue:
        raise ConfigError('config key "tls": true needs "tls_cert" and "tls_key" (or their _pem forms)')
    cert, key = readPEM(certKey, certValue), readPEM(keyKey, keyValue)
    # Imported here: pyOpenSSL is only needed once TLS is on.
    from OpenSSL import SSL, crypto
    from twisted.internet import ssl

    try:
        certificate = crypto.load_certificate(crypto.FILETYPE_PEM, cert)
        privateKey = crypto.load_privatekey(crypto.FILETYPE_PEM, key)
    except crypto.Error:
        raise ConfigError(f'config keys "{certKey}"/"{keyKey}": not a PEM certificate and private key') from None
    try:
        options = ssl.CertificateOptions(
            privateKey=privateKey,
            certificate=certificate,
            extraCertChain=_chain(cert, crypto),
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        )
        options.getContext()  # checks that the key matches the certificate now, not at the first handshake
    except (SSL.Error, ValueError):
        raise ConfigError(f'config keys "{certKey}"/"{keyKey}": the private key does not match the certificate') from None
    return options


def _chain(pem: bytes, crypto: Any) -> list[Any]:
    """The intermediate certificates after the first one in a PEM bundle."""
    blocks = [b"-----BEGIN " + part for part in pem.split(b"-----BEGIN ")[1:]]
    chain = []
    for block in blocks[1:]:
        if block.startswith(b"-----BEGIN CERTIFICATE-----"):
            chain.append(crypto.load_certificate(crypto.FILETYPE_PEM, block))
    return chain
