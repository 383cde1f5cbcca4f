"""The watcher's log: one line per action, UTC time stamps, to a rotating file and to stderr.

A fatal error is written to the file only (:func:`log_file_only`): on stderr the CLI prints its own one-line
error, and the operator should not see it twice.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time

from skyscan.ops.watchconfig import WatchConfig

__all__ = ["close_log", "log_file_only", "one_line", "open_log", "safe_text"]


class _UTCFormatter(logging.Formatter):
    def __init__(self, fmt: str, datefmt: str) -> None:
        super().__init__(fmt, datefmt)
        self.converter = time.gmtime


def open_log(cfg: WatchConfig) -> logging.Logger:
    """A private logger: the rotating log file and stderr, one line per action."""
    logger = logging.Logger("skyscan.watch")
    fmt = _UTCFormatter("%(asctime)s watch[%(process)d] %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    cfg.log_file.parent.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(cfg.log_file, maxBytes=cfg.log_max_bytes,
                                             backupCount=cfg.log_backups, encoding="utf-8"),
        logging.StreamHandler(sys.stderr),
    ]
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger


def close_log(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def log_file_only(logger: logging.Logger, message: str) -> None:
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "%s", (message,), None)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def one_line(text: str, limit: int = 300) -> str:
    """A reason as one line of at most ``limit`` characters (log lines and the catalog's last_error).

    Whitespace runs become one space; any other control character (an ANSI escape, a carriage return) and any
    character that cannot be written as UTF-8 (a lone surrogate from an undecodable file name) is escaped as
    a backslash escape, so text from an alert can neither forge a log line nor break the log file.
    """
    return safe_text(" ".join(str(text).split()))[:limit]


def safe_text(text: str) -> str:
    """``text`` with every non-printable character (newlines included) escaped: a file name as written in a log
    line, a quarantine note or the catalog. Printable text, non-ASCII letters included, is unchanged."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():  # False for control characters, separators other than space, and surrogates
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)
