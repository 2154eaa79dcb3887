"""What every ``script:`` of this workflow does around its ``main``: log to the rule's log file, record failures."""

import logging
from typing import Any, Callable


def run(main: Callable[[Any], None], smk: Any) -> None:
    """Call ``main(smk)`` with logging sent to the rule's first log file; a failure is logged, then re-raised."""
    logging.basicConfig(filename=smk.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        main(smk)
    except Exception:
        logging.getLogger(smk.rule).exception("rule %s failed", smk.rule)
        raise
