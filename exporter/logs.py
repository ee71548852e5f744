"""Log lines in node_exporter's formats: logfmt (default) or JSON, one line per record.

logfmt quotes a value that holds a space, a quote, an equals sign or a
control character, and escapes quotes, backslashes and newlines inside it,
so every line parses whatever a message contains (a client's request line,
an API's error text).
"""
from __future__ import annotations

import json
import logging
import sys
import time

FORMATS = ("logfmt", "json")
LEVELS = ("debug", "info", "warn", "error")
_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
                logging.ERROR: "error", logging.CRITICAL: "error"}


def logfmt_value(value) -> str:
    s = str(value)
    if s and not any(c in s for c in ' "=\\') and s.isprintable():
        return s
    escaped = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    escaped = "".join(c if c.isprintable() or c == " " else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def _fields(record: logging.LogRecord):
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
    fields = [("ts", ts), ("level", _LEVEL_NAMES.get(record.levelno, "info")),
              ("logger", record.name), ("msg", record.getMessage())]
    if record.exc_info:
        fields.append(("err", logging.Formatter().formatException(record.exc_info)))
    return fields


class LogfmtFormatter(logging.Formatter):
    def format(self, record):
        return " ".join(f"{k}={logfmt_value(v)}" for k, v in _fields(record))


class JSONFormatter(logging.Formatter):
    def format(self, record):
        return json.dumps(dict(_fields(record)), ensure_ascii=False)


def setup(level: str = "info", fmt: str = "logfmt", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel({"warn": logging.WARNING}.get(level, getattr(logging, level.upper())))
    # The providers' SDKs log request details at debug level; tokens must never reach our logs.
    from .sources import registry
    for name in registry.quiet_loggers():
        logging.getLogger(name).setLevel(logging.WARNING)
