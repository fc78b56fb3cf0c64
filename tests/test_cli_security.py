"""The security flags of ``node`` and ``status``: parsed in-process, errors that name the flag.

Parsing is tested in-process (argparse exits 2 through SystemExit). The ``status`` command is
run against a real protected server on 127.0.0.1 (HTTPS, a shared secret) served by trio in a
background thread, with an absolute deadline on both sides.
"""

from __future__ import annotations

import argparse
import functools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio
import trustme

from bootstrap import ContactPoint, SeedNodesDocument, Settings
from bootstrap.cli import build_parser, main
from bootstrap.commands.options import apply_environment
from bootstrap.commands.security import security_from_args
from bootstrap.security import Security, TlsSettings
from bootstrap.server import ManagementApp, serve_management
from tests.helpers.ports import free_port
from tests.helpers.running import run

SECRET = "correct-horse-battery-staple-0123456789"
BASE = ["--contact-point", "127.0.0.1:8558", "--contact-points", "127.0.0.1:8558"]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A secret file, and a CA with a certificate for 127.0.0.1 and its key, as files."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    paths = {
        "secret": tmp_path / "secret",
        "cert": tmp_path / "node.crt",
        "key": tmp_path / "node.key",
        "ca": tmp_path / "ca.pem",
        "other-key": tmp_path / "other.key",
    }
    paths["secret"].write_text(SECRET + "\n")
    paths["secret"].chmod(0o600)
    issued.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    issued.private_key_pem.write_to_path(str(paths["key"]))
    ca.cert_pem.write_to_path(str(paths["ca"]))
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(paths["other-key"]))
    return paths


def node_security(argv: list[str], environ: dict[str, str] | None = None) -> Security | None:
    """The node command's Security for ``argv`` and ``environ`` (BOOTSTRAP_* flags applied)."""
    environ = {} if environ is None else environ
    parser, subparsers = build_parser()
    node_parser = subparsers["node"]
    args = parser.parse_args(["node", *apply_environment(node_parser, [*BASE, *argv], environ)])
    return security_from_args(node_parser, args, environ)


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], **environ: str) -> str:
    """The error line of a node command line that must exit 2."""
    with pytest.raises(SystemExit) as exited:
        node_security(argv, dict(environ))
    assert exited.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_no_security_flags_mean_no_security() -> None:
    """Without the flags and BOOTSTRAP_SECRET the node runs open, as before."""
    assert node_security([]) is None


def test_secret_file_flag(files: dict[str, Path]) -> None:
    """--secret-file reads the secret without its trailing line break."""
    security = node_security(["--secret-file", str(files["secret"])])
    assert security == Security(secret=SECRET.encode())


def test_secret_file_from_its_variable(files: dict[str, Path]) -> None:
    """BOOTSTRAP_SECRET_FILE is --secret-file, like every flag's variable."""
    security = node_security([], {"BOOTSTRAP_SECRET_FILE": str(files["secret"])})
    assert security is not None
    assert security.secret == SECRET.encode()


def test_secret_from_bootstrap_secret_is_removed_from_the_environment() -> None:
    """BOOTSTRAP_SECRET gives the secret, and is removed so children do not inherit it."""
    environ = {"BOOTSTRAP_SECRET": SECRET, "OTHER": "kept"}
    security = node_security([], environ)
    assert security is not None
    assert security.secret == SECRET.encode()
    assert environ == {"OTHER": "kept"}


def test_secret_without_tls_warns_of_clear_text(
    files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A secret without TLS works, with a WARNING that it travels in clear text."""
    node_security(["--secret-file", str(files["secret"])])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("travels in clear text" in message for message in warnings)


def test_tls_flags(files: dict[str, Path]) -> None:
    """The --tls-* flags build TlsSettings; --tls-require-client-cert turns on mutual TLS."""
    argv = ["--tls-cert", str(files["cert"]), "--tls-key", str(files["key"])]
    argv += ["--tls-ca", str(files["ca"]), "--tls-require-client-cert"]
    security = node_security(argv, {"BOOTSTRAP_SECRET": SECRET})
    assert security == Security(
        secret=SECRET.encode(),
        tls=TlsSettings(
            certfile=files["cert"],
            keyfile=files["key"],
            cafile=files["ca"],
            require_client_certificate=True,
        ),
    )


def test_missing_secret_file_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A secret file that does not exist exits 2 naming --secret-file and the path."""
    line = refused(["--secret-file", str(tmp_path / "nope")], capsys)
    assert line.endswith(
        f"argument --secret-file: cannot read the secret file {tmp_path / 'nope'}: "
        "No such file or directory"
    )


def test_empty_secret_file_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty secret file exits 2 naming --secret-file."""
    path = tmp_path / "empty"
    path.write_text("")
    line = refused(["--secret-file", str(path)], capsys)
    assert line.endswith(f"argument --secret-file: the secret in {path} is empty")


def test_secret_twice_is_refused(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A secret file and BOOTSTRAP_SECRET together exit 2: which one is meant is unclear."""
    line = refused(["--secret-file", str(files["secret"])], capsys, BOOTSTRAP_SECRET=SECRET)
    assert line.endswith(
        "argument --secret-file: give the secret either in a file or in BOOTSTRAP_SECRET, not both"
    )


def test_empty_bootstrap_secret_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """BOOTSTRAP_SECRET set but empty exits 2: a node meant to be protected must not run open."""
    line = refused([], capsys, BOOTSTRAP_SECRET="")
    assert line.endswith("the secret in $BOOTSTRAP_SECRET is empty")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--tls-key", "{key}"], "argument --tls-key: TLS needs --tls-cert too"),
        (["--tls-cert", "{cert}"], "argument --tls-cert: TLS needs --tls-key too"),
        (["--tls-ca", "{ca}"], "argument --tls-ca: TLS needs --tls-cert too"),
        (
            ["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-require-client-cert"],
            "argument --tls-require-client-cert: needs --tls-ca",
        ),
        (
            ["--tls-cert", "{cert}", "--tls-key", "{other-key}"],
            "argument --tls-key: the TLS key {other-key} does not match the certificate {cert}",
        ),
        (
            ["--tls-cert", "{key}", "--tls-key", "{key}"],
            "argument --tls-cert: the TLS certificate {key} holds no PEM certificate",
        ),
        (
            ["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-ca", "{cert}.missing"],
            "argument --tls-ca: cannot read the TLS CA bundle {cert}.missing: No such file",
        ),
    ],
)
def test_tls_flag_errors_name_the_flag(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    """A TLS flag missing its partner, or a file that cannot be used, exits 2 naming the flag."""
    names = {name: str(path) for name, path in files.items()}
    line = refused([arg.format_map(names) for arg in argv], capsys)
    assert expected.format_map(names) in line


def test_tls_error_from_a_variable_names_the_flag(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """BOOTSTRAP_TLS_KEY without a certificate is reported against --tls-key."""
    line = refused([], capsys, BOOTSTRAP_TLS_KEY=str(files["key"]))
    assert "argument --tls-key: TLS needs --tls-cert too" in line


# --- status ---------------------------------------------------------------------------------


@contextmanager
def protected_node(files: dict[str, Path]) -> Iterator[str]:
    """A management server with the secret and TLS on 127.0.0.1, in a thread; its host:port."""
    bind = ContactPoint("127.0.0.1", free_port())
    settings = Settings()
    app = ManagementApp(
        settings=settings,
        self_contact_point=bind,
        service_name=None,
        document=lambda: SeedNodesDocument(f"http://{bind}", ()),
        status=lambda: {"phase": "probing", "reason": "confirmed 1 of 2", "selfNode": "me"},
        ready=lambda: False,
        on_contacted=lambda point: None,
    )
    security = Security(
        secret=SECRET.encode(),
        tls=TlsSettings(certfile=files["cert"], keyfile=files["key"], cafile=files["ca"]),
    )
    listening, stop = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(
                    serve_management, app, bind=bind, settings=settings, security=security
                )
            )
            listening.set()
            await trio.to_thread.run_sync(stop.wait, abandon_on_cancel=True)
            nursery.cancel_scope.cancel()

    def thread_main() -> None:
        try:
            run(serve, seconds=20)
        except BaseException as error:  # reported by the test, not lost in the thread
            failures.append(error)
            listening.set()

    thread = threading.Thread(target=thread_main)
    thread.start()
    try:
        assert listening.wait(10)
        assert not failures
        yield str(bind)
    finally:
        stop.set()
        thread.join(20)
    assert not failures


def test_status_reads_a_protected_node(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """status with --secret-file and --tls-ca reads a protected node (https assumed)."""
    with protected_node(files) as address:
        argv = ["status", "--secret-file", str(files["secret"]), "--tls-ca", str(files["ca"])]
        assert main([*argv, "--timeout", "5", address]) == 0
    out = capsys.readouterr().out
    assert "reason      confirmed 1 of 2" in out


@pytest.mark.parametrize("with_secret", [False, True])
def test_status_says_why_it_is_refused(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path, with_secret: bool
) -> None:
    """Without the right secret status exits 1 and says what to pass."""
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-clusters-secret-0123456789")
    wrong.chmod(0o600)
    argv = ["status", "--tls-ca", str(files["ca"]), "--timeout", "5"]
    if with_secret:
        argv += ["--secret-file", str(wrong)]
    with protected_node(files) as address:
        assert main([*argv, f"https://{address}"]) == 1
    err = capsys.readouterr().err
    hint = (
        "the node refused the secret of --secret-file"
        if with_secret
        else "the node requires the cluster's secret: pass --secret-file"
    )
    assert f"/bootstrap/status: HTTP 401: {hint}" in err


def test_status_flag_errors_name_the_flag(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """status: a key without its certificate exits 2 naming the flag."""
    with pytest.raises(SystemExit) as exited:
        main(["status", "--tls-key", str(files["key"]), "127.0.0.1:1"])
    assert exited.value.code == 2
    assert (
        "argument --tls-key: a client certificate needs --tls-cert too" in capsys.readouterr().err
    )


def test_status_has_no_mutual_tls_switch() -> None:
    """--tls-require-client-cert is a server setting: only node has it."""
    _, subparsers = build_parser()
    assert "--tls-require-client-cert" not in subparsers["status"].format_help()
    assert isinstance(subparsers["node"], argparse.ArgumentParser)
    assert "--tls-require-client-cert" in subparsers["node"].format_help()
