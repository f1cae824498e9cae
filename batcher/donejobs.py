"""Jobs that are done for good, in about 50 bytes a job instead of a few hundred.

A nightly ledger gains every job its manifest ever ran, and each run replays all of it. A job
completed in a run that ended in order (its files flushed to disk) asks nothing more of any run:
the run needs to tell that it is done, its workflow (for the ledger's settings check) and the
``inputs_hash`` its row was sent with (to warn about a row edited in place). Kept as a Python
object in a dict, that was about 300 bytes a job: a million done jobs held 400 MB before a
nightly run read its first row.

Here they are an open-addressing table (linear probing, load at most 2/3) of 128-bit BLAKE2b
hashes of the job ids, in ``array``\\ s. Two different ids share a hash with probability about
n²/2¹²⁹ (10⁻²⁷ for a million): unlike the manifest's 64-bit duplicate check, a collision here
would pass a new row for a done job, silently, so the hash is twice as long.

A done job that the ledger mentions again (a hand edit, a later version's line) is taken out
with :meth:`DoneJobs.pop` and becomes a full ``JobState`` again; its slot keeps the hash, marked
gone, so the probe chains that pass through it stay whole.

A job completed in a run that has not ended in order (yet: a ``run_end`` may still follow, or
the run was killed) is kept here too, *held*: with the byte offsets of its ``completed`` and
``submitted`` lines, from which its outputs and poll_url are read again when a run checks its
files (:mod:`batcher.reread`): one more 64-bit number a slot, in an array made only when the
first job is held. It packs the ``completed`` line's offset (40 bits: a ledger of up to a TB)
and how far before it the ``submitted`` line starts (24 bits: 16 MB, a job's lines in one run);
a job whose ``submitted`` line is further back (polled again by a later run) has it in a dict.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator
from typing import NamedTuple

#: A slot that holds a key (live or gone); 0 is an empty slot.
_OCCUPIED = 1
#: A slot whose job is done (cleared by :meth:`DoneJobs.pop`).
_LIVE = 2
#: The job's ``inputs_hash`` is recorded (its value may be any 64-bit number, 0 included).
_HAS_HASH = 4
#: A POST of the job may have been billed with no answer since (``JobState.post_unknown``).
_POST_UNKNOWN = 8
#: Held: the offsets of its lines are kept (see the module's docstring).
_HELD = 16
#: The workflow's index + 1 (0: no workflow) is kept above these bits.
_OFFSET_BITS = 40
#: A held job's line offsets, packed: its ``completed`` line's offset in the low bits, and above
#: them how far back its ``submitted`` line starts (0: none; _FAR: in ``DoneJobs._far``).
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1
_FAR = (1 << (64 - _OFFSET_BITS)) - 1
#: The largest ``completed`` offset a job can be held by (a larger one is kept whole instead).
MAX_HELD_OFFSET = _OFFSET_MASK
_WORKFLOW_SHIFT = 8


class DoneJob(NamedTuple):
    """What is kept of a done job."""

    workflow: str | None
    inputs_hash: int | None
    post_unknown: bool
    #: Held (see the module's docstring): the byte offsets of its ``completed`` line and of its
    #: last ``submitted`` line (-1: none); None for a job whose files reached the disk.
    held: tuple[int, int] | None = None

    def held_since(self, synced_at: int) -> tuple[int, int] | None:
        """Its :attr:`held` offsets if its ``completed`` line lies past ``synced_at`` (the last
        ``run_end``'s offset, as :meth:`DoneJobs.held_after` takes it): a job no run has checked
        the files of, to be read back whole; None once a ``run_end`` settled it."""
        return self.held if self.held is not None and self.held[0] > synced_at else None


def _key(job_id: str) -> tuple[int, int]:
    digest = hashlib.blake2b(job_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little")


class DoneJobs:
    """A set of done job ids, each with a :class:`DoneJob`. Not iterable by id (ids are not
    kept, only their hashes)."""

    def __init__(self, capacity: int = 1024) -> None:
        if capacity & (capacity - 1) or capacity < 8:
            raise ValueError("capacity must be a power of two, at least 8")
        self._hi = array("Q", [0]) * capacity
        self._lo = array("Q", [0]) * capacity
        self._hash = array("Q", [0]) * capacity
        self._meta = array("I", [0]) * capacity
        #: Held jobs' line offsets, packed (see _OFFSET_BITS), made with the first one held.
        self._lines: array[int] | None = None
        #: ``completed`` offset -> ``submitted`` offset, for held jobs whose two lines are far apart.
        self._far: dict[int, int] = {}
        #: Slots that hold a key (live or gone): the load that decides when to grow.
        self._occupied = 0
        self._live = 0
        self._workflows: list[str] = []
        self._workflow_index: dict[str, int] = {}

    def __len__(self) -> int:
        return self._live

    def _slot(self, hi: int, lo: int) -> int:
        """The slot that holds this key, or the empty slot where it would go."""
        meta, his, los = self._meta, self._hi, self._lo
        mask = len(meta) - 1
        slot = lo & mask
        while meta[slot] and (his[slot] != hi or los[slot] != lo):
            slot = (slot + 1) & mask
        return slot

    def add(self, job_id: str, job: DoneJob) -> None:
        """Record ``job_id`` as done (replacing what was kept of it, if anything)."""
        hi, lo = _key(job_id)
        slot = self._slot(hi, lo)
        meta = self._meta[slot]
        if not meta:
            self._occupied += 1
        if not meta & _LIVE:
            self._live += 1
        elif meta & _HELD and self._lines is not None:
            self._far.pop(self._lines[slot] & _OFFSET_MASK, None)  # what it replaces
        self._hi[slot], self._lo[slot] = hi, lo
        self._hash[slot] = job.inputs_hash or 0
        self._meta[slot] = self._pack(job)
        if job.held is not None:
            if self._lines is None:
                self._lines = array("Q", [0]) * len(self._meta)
            self._lines[slot] = self._pack_lines(*job.held)
        if 3 * self._occupied > 2 * len(self._meta):
            self._grow()

    def get(self, job_id: str) -> DoneJob | None:
        """What is kept of ``job_id`` if it is done, else None (not hashed at all while the
        table is empty: a first run looks up every row)."""
        if not self._live:
            return None
        slot = self._slot(*_key(job_id))
        return self._unpack(slot) if self._meta[slot] & _LIVE else None

    def pop(self, job_id: str) -> DoneJob | None:
        """Take ``job_id`` out (the ledger says more of it): what was kept of it, or None."""
        if not self._live:
            return None
        slot = self._slot(*_key(job_id))
        if not self._meta[slot] & _LIVE:
            return None
        done = self._unpack(slot)
        if done.held is not None:
            self._far.pop(done.held[0], None)
        self._meta[slot] = _OCCUPIED  # gone, but still on the probe chains through it
        self._live -= 1
        return done

    def held_after(self, offset: int, *, batch: int = 4096) -> Iterator[tuple[int, int]]:
        """The held jobs whose ``completed`` line lies past ``offset`` (the last ``run_end``'s):
        their (``completed``, ``submitted``) line offsets, in the order of the file within each
        ``batch`` (a few preads apart, without a list of them all)."""
        lines = self._lines
        if lines is None:
            return
        found: list[tuple[int, int]] = []
        for slot, meta in enumerate(self._meta):
            if meta & (_LIVE | _HELD) == _LIVE | _HELD and lines[slot] & _OFFSET_MASK > offset:
                found.append(self._unpack_lines(lines[slot]))
                if len(found) >= batch:
                    yield from sorted(found)
                    found.clear()
        yield from sorted(found)

    def workflows(self) -> set[str | None]:
        """The workflows of the done jobs (None for a job recorded without one)."""
        indexes = {m >> _WORKFLOW_SHIFT for m in self._meta if m & _LIVE}
        return {self._workflows[i - 1] if i else None for i in indexes}

    def _pack(self, job: DoneJob) -> int:
        meta = _OCCUPIED | _LIVE
        if job.inputs_hash is not None:
            meta |= _HAS_HASH
        if job.post_unknown:
            meta |= _POST_UNKNOWN
        if job.held is not None:
            meta |= _HELD
        if job.workflow is not None:
            index = self._workflow_index.get(job.workflow)
            if index is None:
                self._workflows.append(job.workflow)
                index = self._workflow_index[job.workflow] = len(self._workflows)
            meta |= index << _WORKFLOW_SHIFT
        return meta

    def _unpack(self, slot: int) -> DoneJob:
        meta = self._meta[slot]
        index = meta >> _WORKFLOW_SHIFT
        lines = self._lines
        return DoneJob(
            self._workflows[index - 1] if index else None,
            self._hash[slot] if meta & _HAS_HASH else None,
            bool(meta & _POST_UNKNOWN),
            self._unpack_lines(lines[slot]) if meta & _HELD and lines is not None else None,
        )

    def _pack_lines(self, completed: int, submitted: int) -> int:
        if not 0 <= completed <= _OFFSET_MASK:
            raise ValueError(f"a held job's completed offset must be 0-{_OFFSET_MASK}, not {completed}")
        if submitted < 0:
            return completed  # no submitted line
        back = completed - submitted
        if not 0 < back < _FAR:
            self._far[completed] = submitted
            back = _FAR
        return completed | back << _OFFSET_BITS

    def _unpack_lines(self, packed: int) -> tuple[int, int]:
        completed, back = packed & _OFFSET_MASK, packed >> _OFFSET_BITS
        if back == _FAR:
            return completed, self._far[completed]
        return completed, (completed - back if back else -1)

    def _grow(self) -> None:
        """Twice the slots (or as many, when most of the load is gone slots), live keys only."""
        old = self._hi, self._lo, self._hash, self._meta
        lines = self._lines
        size = len(old[3]) * (2 if 3 * self._live > len(old[3]) else 1)
        self._hi = array("Q", [0]) * size
        self._lo = array("Q", [0]) * size
        self._hash = array("Q", [0]) * size
        self._meta = array("I", [0]) * size
        if lines is not None:
            self._lines = array("Q", [0]) * size
        self._occupied = 0
        for old_slot, (hi, lo, value, meta) in enumerate(zip(*old, strict=True)):
            if meta & _LIVE:
                slot = self._slot(hi, lo)
                self._hi[slot], self._lo[slot], self._hash[slot], self._meta[slot] = hi, lo, value, meta
                self._occupied += 1
                if meta & _HELD and lines is not None and self._lines is not None:
                    self._lines[slot] = lines[old_slot]
