"""The done-jobs table: a set of job ids by 128-bit hash, with what a run needs of each."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batcher.donejobs import MAX_HELD_OFFSET, DoneJob, DoneJobs

#: A few ids that recur (so jobs are popped and replaced), and any others.
IDS = st.sampled_from(["a", "b", "job-1"]) | st.text(min_size=1, max_size=12)
JOBS = st.builds(
    DoneJob,
    st.none() | st.sampled_from(["sketch", "blog-image", "other"]),
    st.none() | st.sampled_from([0, 1, 2**64 - 1]) | st.integers(0, 2**64 - 1),
    st.booleans(),
    # Held: byte offsets of its completed and submitted lines (-1: no submitted line), up to 2**40
    # (a TB of ledger); the submitted line just before it (packed with it), or anywhere (kept
    # apart when more than 16 MB back, or, as never in a ledger, after it).
    st.none()
    | st.integers(0, MAX_HELD_OFFSET).flatmap(
        lambda done: st.tuples(
            st.just(done),
            st.just(-1) | st.integers(max(0, done - 2**25), done) | st.integers(-1, MAX_HELD_OFFSET),
        )
    ),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(["add", "pop", "get"]), IDS, JOBS), max_size=200))
def test_the_table_answers_as_a_dict_would(ops: list[tuple[str, str, DoneJob]]) -> None:
    """Any sequence of adds, pops and lookups (ids re-added after a pop, growth past many
    tombstones from a small table) answers as a dict does."""
    table, model = DoneJobs(capacity=8), {}
    for op, job_id, job in ops:
        if op == "add":
            if job.held and any(o.held and o.held[0] == job.held[0] for k, o in model.items() if k != job_id):
                continue  # two jobs held by one completed line: never in a ledger
            table.add(job_id, job)
            model[job_id] = job
        elif op == "pop":
            assert table.pop(job_id) == model.pop(job_id, None)
        else:
            assert table.get(job_id) == model.get(job_id)
        assert len(table) == len(model)
    for job_id, job in model.items():
        assert table.get(job_id) == job
    assert table.workflows() == {job.workflow for job in model.values()}
    held = sorted(job.held for job in model.values() if job.held is not None)
    assert sorted(table.held_after(-1, batch=3)) == held
    assert list(table.held_after(-1)) == held  # one batch: in the order of the file
    cut = held[len(held) // 2][0] if held else 0
    assert sorted(table.held_after(cut, batch=3)) == [h for h in held if h[0] > cut]
    # A submitted line too far back to pack (16 MB or more) is kept aside, for live jobs only:
    # a job popped or replaced leaves nothing behind.
    far = {c: s for c, s in held if s >= 0 and not 0 < c - s < (1 << 24) - 1}
    assert table._far == far


def test_many_pops_and_adds_keep_the_table_small_and_every_lookup_right() -> None:
    """A table that keeps losing jobs to pops and gaining others rehashes its gone slots away
    instead of growing without end."""
    table = DoneJobs(capacity=8)
    for i in range(5_000):
        table.add(f"job-{i}", DoneJob("sketch", i, False))
        if i >= 10:
            assert table.pop(f"job-{i - 10}") == DoneJob("sketch", i - 10, False)
    assert len(table) == 10
    assert len(table._meta) <= 64, len(table._meta)
    assert [table.get(f"job-{i}") for i in range(4_988, 4_992)] == [
        None,
        None,
        DoneJob("sketch", 4_990, False),
        DoneJob("sketch", 4_991, False),
    ]


def test_a_hash_of_zero_is_kept_apart_from_no_hash() -> None:
    table = DoneJobs()
    table.add("a", DoneJob("sketch", 0, False))
    table.add("b", DoneJob("sketch", None, True))
    assert table.get("a") == DoneJob("sketch", 0, False)
    assert table.get("b") == DoneJob("sketch", None, True)


def test_ids_that_utf8_cannot_encode_are_kept() -> None:
    """A ledger line's id may hold a lone surrogate (JSON's ``\\udce9``)."""
    table = DoneJobs()
    table.add("caf\udce9", DoneJob(None, None, False))
    assert table.get("caf\udce9") == DoneJob(None, None, False) and table.get("café") is None


def test_a_million_done_jobs_fit_in_well_under_a_hundred_megabytes() -> None:
    """The table's own arrays: at most 2/3 full, 28 bytes a slot. A JobState in a dict was
    about 300 bytes a job (400 MB for a nightly ledger of a million jobs). At most 84 bytes a
    job, just after the table doubled (a third full)."""
    table = DoneJobs()
    tracemalloc.start()
    try:
        for i in range(30_000):
            table.add(f"job-{i:07d}", DoneJob("sketch", i, False))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held / len(table) < 90, held / len(table)


def test_a_capacity_that_is_not_a_power_of_two_is_refused() -> None:
    with pytest.raises(ValueError, match="power of two"):
        DoneJobs(capacity=100)
