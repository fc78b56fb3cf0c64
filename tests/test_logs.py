"""Log formats: JSON lines carry time, level, logger, message (and the exception)."""

from __future__ import annotations

import json
import logging

import pytest

from bootstrap.logs import JsonFormatter, configure_logging


def test_json_formatter_writes_one_object_per_record() -> None:
    """A record becomes one JSON object with the fields a log pipeline indexes."""
    record = logging.LogRecord(
        "bootstrap.node", logging.INFO, __file__, 1, "decided: %s", ("x",), None
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "info"
    assert entry["logger"] == "bootstrap.node"
    assert entry["message"] == "decided: x"
    assert entry["time"].endswith("Z")


def test_json_formatter_includes_the_exception() -> None:
    """An exception's traceback is kept in the 'exception' field."""
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("b", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["exception"]


@pytest.mark.parametrize("json_format", [False, True])
def test_configure_logging_routes_the_bootstrap_loggers(
    json_format: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """configure_logging sends bootstrap.* records to stderr in the chosen format."""
    configure_logging(level="INFO", json_format=json_format)
    try:
        logging.getLogger("bootstrap.test").info("hello %d", 7)
        err = capsys.readouterr().err.strip()
        if json_format:
            assert json.loads(err)["message"] == "hello 7"
        else:
            assert err.endswith("bootstrap.test: hello 7")
    finally:
        root = logging.getLogger("bootstrap")
        root.handlers.clear()
        root.propagate = True
