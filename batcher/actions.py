"""What one request does for one job, and what each answer means for the job and the run.

The classification follows ``../shared/segmind-api.md``:

====================  ===================================  =====================================
answer                on submit                            on poll
====================  ===================================  =====================================
200 (any 2xx)         ``submitted`` (poll_url, durable);   QUEUED/PROCESSING/other: poll again;
                      no poll_url/request_id: an error     COMPLETED: ``generated``, download
                      it spells out (FAILED, ``error``,    (no output, or its JSON cut: poll again);
                      a code) is that refusal (a 400       FAILED: ``failed`` (not retryable);
                      without a code); anything else is    unfinished after poll.give_up_after:
                      an unknown outcome, as a 5xx         ``failed`` (retryable: re-attached)
400 (422)             ``failed``, not retryable            retry (a poll has no input to reject)
401 / 403             stop the run (exit 3)                stop the run (exit 3)
404                   stop submitting its workflow (3)     retry, bounded; then ``expired``
406                   stop submitting, keep polling (3)    stop submitting (3); retry, bounded
405, 3xx              stop submitting (3): wrong URL       retry, bounded
429                   pause the whole run, retry the job   pause the whole run, poll again
5xx, timeout, reset   outcome unknown: ``submit_unknown``, retry with backoff, bounded; then
                      resubmit with backoff (or fail)      ``failed`` (retryable: re-attached)
====================  ===================================  =====================================

Durability: ``submitting`` is fsynced before the POST, and ``submitted`` is written the moment
the answer arrives (safe from kill -9 at once, on disk with the next group commit, within a
second), so a job whose poll_url the provider gave us is never POSTed again after a killed
process.
"""

from __future__ import annotations

from .actions_poll import PollActions
from .actions_submit import SubmitActions
from .work import Action, Job


class Actions(SubmitActions, PollActions):
    """Performs requests for the scheduler and records every step in the ledger."""

    async def perform(self, job: Job, action: Action) -> None:
        if action == "submit":
            await self.submit(job)
        else:
            await self.poll(job)
