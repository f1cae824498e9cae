"""The job store as a table of numbers: lifecycle, worker pool, draws, billing, expiry."""

from __future__ import annotations

import statistics

import pytest

from batcher.emulator import EmulatorConfig
from batcher.emulator.catalog import BLOG_IMAGE, SKETCH
from batcher.emulator.jobs import (
    COMPLETED,
    FAILED,
    PROCESSING,
    QUEUED,
    JobStore,
    Output,
    RenderResult,
    draw_fate,
)

DONE = RenderResult(outputs=(Output("out.png", "image/png", b"png"),))


def _store(**settings: object) -> JobStore:
    config = EmulatorConfig(**{"duration_median": 10.0, "duration_spread": 0.0, **settings})  # type: ignore[arg-type]
    return JobStore(config)


def test_a_job_is_processing_until_both_its_time_and_its_render_are_done() -> None:
    store = _store()
    job = store.submit(SKETCH, {"input_image": "data:,x"}, "h1", "k", now=0.0)
    assert job.status(0.0) == PROCESSING
    assert job.status(50.0) == PROCESSING  # time is up, but the render is not in
    store.rendered(job, DONE, now=3.0)
    assert job.status(9.99) == PROCESSING
    assert job.status(10.0) == COMPLETED
    assert job.ended_at() == 10.0


def test_a_late_render_moves_the_end() -> None:
    store = _store()
    job = store.submit(SKETCH, {"input_image": "data:,x"}, "h1", "k", now=0.0)
    store.rendered(job, DONE, now=25.0)
    assert job.ended_at() == 25.0


def test_bounded_workers_keep_extra_jobs_queued_in_submission_order() -> None:
    store = _store(workers=2)
    jobs = [store.submit(SKETCH, {"input_image": f"data:,{i}"}, f"h{i}", "k", now=0.0) for i in range(5)]
    assert [j.start_at for j in jobs] == [0.0, 0.0, 10.0, 10.0, 20.0]
    assert [j.status(5.0) for j in jobs] == [PROCESSING, PROCESSING, QUEUED, QUEUED, QUEUED]
    assert [j.status(15.0) for j in jobs] == [PROCESSING, PROCESSING, PROCESSING, PROCESSING, QUEUED]


def test_a_worker_freed_earlier_takes_the_next_job() -> None:
    store = _store(workers=1)
    first = store.submit(SKETCH, {"input_image": "data:,a"}, "a", "k", now=0.0)
    second = store.submit(SKETCH, {"input_image": "data:,b"}, "b", "k", now=30.0)  # pool idle since 10
    assert (first.start_at, second.start_at) == (0.0, 30.0)


def test_queue_delay_holds_every_job_before_it_starts() -> None:
    store = _store(queue_delay=3.0)
    job = store.submit(SKETCH, {"input_image": "data:,a"}, "a", "k", now=1.0)
    assert (job.status(3.9), job.status(4.0)) == (QUEUED, PROCESSING)
    assert job.finish_at == 14.0


def test_completed_jobs_are_charged_and_failed_ones_are_not() -> None:
    store = _store(credits=1.0)
    good = store.submit(BLOG_IMAGE, {"Blog_title_and_description": "a"}, "a", "k", now=0.0)
    bad = store.submit(SKETCH, {"input_image": "data:,b"}, "b", "k", now=0.0)
    store.rendered(good, DONE, now=0.0)
    store.rendered(bad, RenderResult(error="not an image"), now=0.0)
    assert store.balance(5.0) == 1.0
    assert store.balance(10.0) == pytest.approx(1.0 - 0.4363)
    assert (good.status(10.0), bad.status(10.0)) == (COMPLETED, FAILED)
    assert store.balance(100.0) == pytest.approx(1.0 - 0.4363)  # settling twice charges once


def test_unlimited_credits_have_no_balance() -> None:
    assert _store().balance(0.0) is None


def test_records_expire_after_record_ttl_and_files_after_output_ttl() -> None:
    store = _store(record_ttl=60.0, output_ttl=600.0)
    job = store.submit(SKETCH, {"input_image": "data:,a"}, "a", "k", now=0.0)
    store.rendered(job, DONE, now=0.0)
    assert store.get(job.request_id, 69.9) is job
    assert store.get(job.request_id, 70.0) is None
    assert store.output(job.request_id, "out.png", 609.9) is not None
    assert store.output(job.request_id, "out.png", 610.0) is None
    assert store.get("0" * 32, 0.0) is None


def test_outputs_are_not_served_before_the_job_completes() -> None:
    store = _store()
    job = store.submit(SKETCH, {"input_image": "data:,a"}, "a", "k", now=0.0)
    store.rendered(job, DONE, now=0.0)
    assert store.output(job.request_id, "out.png", 5.0) is None
    assert store.output(job.request_id, "other.png", 10.0) is None
    assert store.output(job.request_id, "out.png", 10.0) == DONE.outputs[0]


def test_submissions_are_counted_per_input() -> None:
    store = _store()
    for digest in ("a", "b", "a"):
        store.submit(SKETCH, {"input_image": "data:,x"}, digest, "k", now=0.0)
    assert store.submissions_per_input == {"a": 2, "b": 1}
    assert [j.occurrence for j in store] == [0, 0, 1]


def test_a_fate_depends_on_seed_input_and_occurrence_only() -> None:
    config = EmulatorConfig(seed=7, fail_rate=0.5)
    assert draw_fate(config, "abc", 0) == draw_fate(config, "abc", 0)
    assert draw_fate(config, "abc", 0) != draw_fate(config, "abc", 1)
    assert draw_fate(config, "abc", 0) != draw_fate(EmulatorConfig(seed=8, fail_rate=0.5), "abc", 0)


def test_zero_spread_gives_exactly_the_median() -> None:
    config = EmulatorConfig(duration_median=2.5, duration_spread=0.0)
    assert {draw_fate(config, str(i), 0).duration for i in range(20)} == {2.5}


def test_lognormal_durations_centre_on_the_median() -> None:
    config = EmulatorConfig(duration_median=4.0, duration_spread=0.5)
    durations = [draw_fate(config, str(i), 0).duration for i in range(2000)]
    # Seeded draws: the same numbers every run, so these bounds cannot flake.
    assert 3.6 < statistics.median(durations) < 4.4
    assert min(durations) > 0.0


def test_bimodal_durations_have_two_modes_in_the_configured_share() -> None:
    config = EmulatorConfig(
        duration_shape="bimodal",
        bimodal_short=1.0,
        bimodal_long=30.0,
        bimodal_long_share=0.25,
        duration_spread=0.0,
    )
    durations = [draw_fate(config, str(i), 0).duration for i in range(2000)]
    assert set(durations) == {1.0, 30.0}
    assert 0.2 < durations.count(30.0) / len(durations) < 0.3


def test_fail_rate_is_the_share_of_failing_jobs() -> None:
    config = EmulatorConfig(fail_rate=0.1)
    fails = sum(draw_fate(config, str(i), 0).fails for i in range(2000))
    assert 150 < fails < 250


@pytest.mark.parametrize(
    ("shape", "keys"),
    [
        ("string", {"status", "error", "error_message"}),
        ("object", {"status", "error", "error_message"}),
        ("list", {"status", "error_message"}),
    ],
)
def test_failure_bodies_come_in_each_shape(shape: str, keys: set[str]) -> None:
    store = _store(fail_rate=1.0, error_shape=shape)
    job = store.submit(SKETCH, {"input_image": "data:,a"}, "a", "k", now=0.0)
    store.rendered(job, DONE, now=0.0)
    body = job.failure()
    assert set(body) == keys and body["status"] == FAILED
    message = body["error_message"]
    if shape == "list":
        assert message[0]["model"] == SKETCH.model and message[0]["error"]
    elif shape == "object":
        assert message["message"]
    else:
        assert isinstance(message, str) and message == body["error"]


def test_mixed_error_shape_uses_every_shape() -> None:
    config = EmulatorConfig(error_shape="mixed")
    assert {draw_fate(config, str(i), 0).error_shape for i in range(100)} == {"string", "object", "list"}


def test_reconfiguring_redraws_unfinished_jobs_and_rebooks_the_pool() -> None:
    store = _store(workers=1, duration_median=3600.0)
    done = store.submit(SKETCH, {"input_image": "data:,a"}, "a", "k", now=0.0)
    running = store.submit(SKETCH, {"input_image": "data:,b"}, "b", "k", now=0.0)
    queued = store.submit(SKETCH, {"input_image": "data:,c"}, "c", "k", now=0.0)
    for job in (done, running, queued):
        store.rendered(job, DONE, now=0.0)
    assert (done.status(3600.0), running.status(3600.0), queued.status(3600.0)) == (
        COMPLETED,
        PROCESSING,
        QUEUED,
    )
    store.reconfigure(EmulatorConfig(workers=1, duration_median=5.0, duration_spread=0.0), now=3700.0)
    assert done.finish_at == 3600.0  # finished jobs keep their history
    assert (running.start_at, running.finish_at) == (3600.0, 3605.0)  # started: keeps its start
    assert (queued.start_at, queued.finish_at) == (3700.0, 3705.0)  # queued: booked again from now
    assert [j.status(3705.0) for j in (done, running, queued)] == [COMPLETED] * 3
    store.settle(3705.0)
    assert store.charged == pytest.approx(3 * SKETCH.price)


def test_restored_jobs_keep_their_times_rebuild_the_pool_and_count_their_inputs() -> None:
    earlier = _store(workers=2)
    jobs = [earlier.submit(SKETCH, {"input_image": "data:,a"}, "a", "k", now=0.0) for _ in range(3)]
    for job in jobs:
        earlier.rendered(job, DONE, now=0.0)
    store = _store(workers=2)
    store.restore(reversed(jobs))
    assert store.submissions_per_input == {"a": 3}
    assert [j.start_at for j in jobs] == [0.0, 0.0, 10.0]
    # The pool is busy until 10 (one worker) and 20 (the other): a new job starts at 10.
    assert store.submit(SKETCH, {"input_image": "data:,b"}, "b", "k", now=1.0).start_at == 10.0
    store.settle(15.0)
    assert store.charged == pytest.approx(2 * SKETCH.price)  # billed again from the times, once
    with pytest.raises(RuntimeError):
        store.restore(jobs)
