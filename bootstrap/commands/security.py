"""The security flags of ``node`` and ``status``: a shared secret and TLS.

The secret is never a flag value (it would show in ``ps``): it is read from the file of
``--secret-file`` (``BOOTSTRAP_SECRET_FILE``) or, for ``node``, from the variable
``BOOTSTRAP_SECRET`` itself. A process's environment can be read in ``/proc/<pid>/environ`` by
its own user (and root) only, and ``node`` removes the variable from its environment once read,
so the ``--on-decided`` command does not inherit it.

A missing file, a key without its certificate, a key that does not match it: each exits 2 with a
message naming the flag to fix.
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
from collections.abc import MutableMapping
from typing import NoReturn

from ..core import UsageError
from ..security import (
    SECRET_VARIABLE,
    Security,
    TlsFileError,
    TlsSettings,
    read_secret_file,
    secret_from_environment,
)

__all__ = [
    "add_security_arguments",
    "security_from_args",
    "status_client_options",
]

logger = logging.getLogger("bootstrap.cli")

_TLS_FLAGS = {"certfile": "--tls-cert", "keyfile": "--tls-key", "cafile": "--tls-ca"}


def add_security_arguments(parser: argparse.ArgumentParser, *, node: bool = True) -> None:
    """Add ``--secret-file`` and the ``--tls-*`` flags (``node``: also mutual TLS)."""
    group = parser.add_argument_group("security (see docs/node.md#security)")
    group.add_argument(
        "--secret-file",
        metavar="PATH",
        help="the cluster's shared secret, in a file (never on the command line)"
        + (f"; or set {SECRET_VARIABLE}" if node else ""),
    )
    cert_help = (
        "this node's TLS certificate (PEM): serve HTTPS, probe peers over https/wss"
        if node
        else "a client certificate (PEM), for a node that requires one"
    )
    group.add_argument("--tls-cert", metavar="PATH", help=cert_help)
    group.add_argument("--tls-key", metavar="PATH", help="the private key of --tls-cert (PEM)")
    group.add_argument(
        "--tls-ca",
        metavar="PATH",
        help=("verify peers' certificates" if node else "verify the node's certificate")
        + " against these CAs (PEM; default: the system's)",
    )
    if node:
        group.add_argument(
            "--tls-require-client-cert",
            action="store_true",
            help="mutual TLS: refuse clients without a certificate that --tls-ca verifies",
        )


def security_from_args(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    environ: MutableMapping[str, str] | None = None,
) -> Security | None:
    """The node's :class:`Security` from its flags and ``BOOTSTRAP_SECRET``; None if none given.

    ``BOOTSTRAP_SECRET`` is removed from ``environ`` (``os.environ`` by default) once read.
    """
    environ = os.environ if environ is None else environ
    tls = _tls_from_args(parser, args)
    secret = _secret_from_args(parser, args, environ)
    if secret is None and tls is None:
        return None
    if secret is not None and tls is None:
        logger.warning(
            "a shared secret without TLS travels in clear text with every probe: anyone who can "
            "see the network traffic can read it; add --tls-cert and --tls-key"
        )
    return Security(secret=secret, tls=tls)


def _secret_from_args(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    environ: MutableMapping[str, str],
) -> bytes | None:
    path: str | None = args.secret_file
    try:
        from_environment = secret_from_environment(SECRET_VARIABLE, environ)
    except UsageError as error:
        parser.error(str(error))
    finally:
        # Read once; children (the --on-decided command) must not inherit it.
        environ.pop(SECRET_VARIABLE, None)
    if path is not None and from_environment is not None:
        _fail(
            parser,
            "--secret-file",
            f"give the secret either in a file or in {SECRET_VARIABLE}, not both",
        )
    if path is None:
        return from_environment
    try:
        return read_secret_file(path)
    except UsageError as error:
        _fail(parser, "--secret-file", str(error))


def _tls_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TlsSettings | None:
    cert: str | None = args.tls_cert
    key: str | None = args.tls_key
    ca: str | None = args.tls_ca
    mutual: bool = args.tls_require_client_cert
    if cert is None and key is None and ca is None and not mutual:
        return None
    if cert is None or key is None:
        given = next(
            flag
            for flag, value in [
                ("--tls-key", key),
                ("--tls-cert", cert),
                ("--tls-ca", ca),
                ("--tls-require-client-cert", mutual),
            ]
            if value
        )
        missing = "--tls-key" if cert is not None else "--tls-cert"
        _fail(
            parser,
            given,
            f"TLS needs {missing} too: a node serves HTTPS with --tls-cert and --tls-key",
        )
    if mutual and ca is None:
        _fail(
            parser,
            "--tls-require-client-cert",
            "needs --tls-ca: the CA bundle that verifies the peers' client certificates",
        )
    try:
        tls = TlsSettings(certfile=cert, keyfile=key, cafile=ca, require_client_certificate=mutual)
        tls.check()
    except TlsFileError as error:
        _fail(parser, _TLS_FLAGS[error.field], str(error))
    return tls


def status_client_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[dict[str, str], ssl.SSLContext | None]:
    """The ``status`` command's request headers and TLS context (None: not asked for TLS)."""
    headers: dict[str, str] = {}
    if args.secret_file is not None:
        try:
            secret = read_secret_file(args.secret_file)
        except UsageError as error:
            _fail(parser, "--secret-file", str(error))
        authorization = Security(secret=secret).authorization()
        assert authorization is not None
        headers["Authorization"] = authorization
    cert: str | None = args.tls_cert
    key: str | None = args.tls_key
    ca: str | None = args.tls_ca
    if cert is None and key is None and ca is None:
        return headers, None
    if (cert is None) != (key is None):
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        _fail(parser, given, f"a client certificate needs {missing} too")
    if cert is not None and key is not None:
        try:
            return headers, TlsSettings(certfile=cert, keyfile=key, cafile=ca).client_context()
        except TlsFileError as error:
            _fail(parser, _TLS_FLAGS[error.field], str(error))
    assert ca is not None
    try:
        return headers, ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as error:
        _fail(parser, "--tls-ca", f"cannot use the TLS CA bundle {ca}: {error}")


def _fail(parser: argparse.ArgumentParser, flag: str, message: str) -> NoReturn:
    parser.error(f"argument {flag}: {message}")
