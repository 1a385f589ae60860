"""Structured JSON log lines with ``severity``, as Cloud Logging reads them from stdout."""

from __future__ import annotations

import json
import logging
import re
import sys

# Signed URLs and bearer tokens are credentials: they never reach a log line.
_SECRETS = re.compile(r"(X-Goog-Signature=|X-Goog-Credential=|access_token=|Bearer )[^&\s\"']+")


def redact(text: str) -> str:
    return _SECRETS.sub(r"\1[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": record.levelname,
            "message": redact(record.getMessage()),
            "logger": record.name,
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry)


def configure_logging(level: int = logging.INFO) -> None:
    """One JSON line per record on stdout; idempotent."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
