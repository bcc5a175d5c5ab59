"""Logging for rule scripts: to the rule's log file and to stderr, so progress shows either way."""

from __future__ import annotations

import logging
import sys
import warnings


def setup(log_path: str | None = None, level: int = logging.INFO) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers, force=True
    )
    logging.captureWarnings(True)
    warnings.simplefilter("default")
