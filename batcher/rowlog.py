"""Log messages about manifest rows, one a row up to a cap.

A bad row (or one edited under the id of a job that ran) is named in the log with its file, line,
field and fix. A manifest whose every row is bad (a misspelt CSV header) named each of them: 50,000
identical lines in a nightly run's log, every night, and as many from ``--dry-run``. The first
:data:`ROW_MESSAGES` are named, then one line says that more follow; the summary counts them all,
and the ledger keeps every invalid row's ``invalid`` line (``batcher status`` lists the first 50).
"""

from __future__ import annotations

import logging

log = logging.getLogger("batcher")

#: Rows named one by one in a run's (or a dry run's) log, of each kind.
ROW_MESSAGES = 50


class RowLog:
    """Logs each message at ``level`` until ``cap`` were, then ``more`` once, then nothing."""

    def __init__(self, level: int, more: str, cap: int = ROW_MESSAGES) -> None:
        self.level = level
        self.more = more
        self.cap = cap
        self.count = 0

    def __call__(self, message: object) -> None:
        self.count += 1
        if self.count <= self.cap:
            log.log(self.level, "%s", message)
        elif self.count == self.cap + 1:
            log.log(self.level, "%s", self.more)
