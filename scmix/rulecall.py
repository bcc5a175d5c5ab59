"""How a rule script runs a package function: logging to the rule's log, bad input as one clear line."""

from __future__ import annotations

import logging
import sys

from scmix.errors import ScmixInputError
from scmix.logs import setup


def run(main, smk) -> None:
    setup(smk.log[0] if len(smk.log) else None)
    rule = getattr(smk, "rule", "?")
    try:
        main(smk)
    except ScmixInputError as err:
        logging.getLogger("scmix").error("rule %s: %s", rule, err)
        sys.exit(1)
