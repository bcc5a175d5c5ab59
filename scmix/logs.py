"""Logging for rule scripts: to the rule's log file and to stderr, so progress shows either way (and the messages
still show when the log file cannot be written)."""

from __future__ import annotations

import logging
import sys
import warnings

from scmix.errors import WRITE_ERRNOS, refused_write_line


class LogFile(logging.FileHandler):
    """The rule's log file. A write the file system refuses (a full disk) is said once, in one line on stderr,
    where the messages go on: not a traceback for each message."""

    refused = False

    def handleError(self, record):  # noqa: N802 - logging's name
        err = sys.exc_info()[1]
        if not isinstance(err, OSError) or err.errno not in WRITE_ERRNOS:
            return super().handleError(record)
        if not self.refused:
            self.refused = True
            line = refused_write_line(OSError(err.errno, err.strerror, self.baseFilename))
            sys.stderr.write(f"the log file is not written from here on, the messages go to stderr alone: {line}\n")
        return None


def setup(log_path: str | None = None, level: int = logging.INFO) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(LogFile(log_path, mode="w"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers, force=True
    )
    logging.captureWarnings(True)
    warnings.simplefilter("default")
