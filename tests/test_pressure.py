"""Budget pressure as a table of time patterns (pure; time is an argument)."""

from __future__ import annotations

import pytest

from batcher.durations import DurationModel
from batcher.pollpolicy import AdaptivePolls
from batcher.pressure import BudgetPressure


def _rate_bound(meter: BudgetPressure, *, rate: float, requests: int, start: float = 0.0) -> None:
    """A submission always ready: the loop waits 1/rate for each token, then sends at once."""
    now = start
    for _ in range(requests):
        meter.observe(now, waiting=True, rate=rate)
        now += 1.0 / rate
        meter.observe(now, waiting=False, rate=rate)


def _slot_bound(meter: BudgetPressure, *, rate: float, job: float, slots: int, jobs: int) -> None:
    """Budget to spare: a submission is ready only as a slot frees, and waits one token."""
    now = 0.0
    for _ in range(jobs):
        meter.observe(now, waiting=True, rate=rate)
        meter.observe(now + 1.0 / rate, waiting=False, rate=rate)
        now += job / slots


@pytest.mark.parametrize("scale", [1 / 30, 1.0, 60.0], ids=["bench", "per second", "per minute"])
def test_a_rate_bound_run_reads_as_full_pressure_at_any_time_scale(scale: float) -> None:
    meter = BudgetPressure()
    _rate_bound(meter, rate=1.0 / scale, requests=200)
    assert meter.value > 0.95


def test_a_run_contested_from_its_start_reads_as_contested_at_once() -> None:
    """The averages are divided by the weight they have gathered: a rate-bound run reads as
    contested after its first few requests, not a horizon (20 request intervals) later. Started
    from 0, it read 0.03 after five requests (a share of 0.22, inside the dead zone), and the
    first jobs of every rate-bound run were polled as if requests were to spare."""
    meter = BudgetPressure()
    _rate_bound(meter, rate=0.4, requests=5)
    assert meter.value > 0.7
    spare = BudgetPressure()
    spare.observe(0.0, waiting=False, rate=0.4)
    spare.observe(10.0, waiting=False, rate=0.4)
    assert spare.value == 0.0


@pytest.mark.parametrize("scale", [1 / 30, 1.0, 60.0], ids=["bench", "per second", "per minute"])
def test_a_slot_bound_run_with_budget_to_spare_reads_as_none(scale: float) -> None:
    """4 slots of 60 s jobs, 2 requests a second: a submission waits 0.5 s every 15 s."""
    meter = BudgetPressure()
    _slot_bound(meter, rate=2.0 / scale, job=60.0 * scale, slots=4, jobs=80)
    assert 0.0 < meter.share < 0.2 and meter.value == 0.0


def test_pressure_fades_when_the_budget_stops_binding() -> None:
    meter = BudgetPressure()
    _rate_bound(meter, rate=2.0, requests=100)
    assert meter.value > 0.95
    meter.observe(50.0, waiting=False, rate=2.0)
    meter.observe(50.0 + 3 * 20 / 2.0, waiting=False, rate=2.0)  # three horizons later
    assert meter.value == 0.0


def test_slots_being_scarce_discounts_budget_pressure() -> None:
    """Both bind: a poll costs a request, but noticing a job late costs its slot."""
    meter = BudgetPressure()
    now = 0.0
    for _ in range(200):
        meter.observe(now, waiting=True, rate=1.0, slots_full=True)
        now += 1.0
    meter.observe(now, waiting=False, rate=1.0, slots_full=True)
    assert meter.share > 0.95 and meter.slots > 0.95 and meter.value < 0.05


def test_time_is_credited_to_the_state_that_held_during_it() -> None:
    """Slots full for 40 s, then freed: those 40 s were scarce slots, whatever comes next.
    Credited to the new state, a run whose slots free up now and then would read as never
    slot-bound, and poll sparsely while a finished job holds a slot."""
    meter = BudgetPressure()
    meter.observe(0.0, waiting=True, rate=1.0, slots_full=True)
    meter.observe(40.0, waiting=False, rate=1.0, slots_full=False)
    assert meter.slots == pytest.approx(1.0) and meter.share == pytest.approx(1.0)
    meter.observe(100.0, waiting=False, rate=1.0, slots_full=False)
    assert meter.slots < 0.1 and meter.share < 0.1


def test_slot_scarcity_reads_at_once_from_the_start_of_a_run() -> None:
    """As for the budget share: slots full for the first two seconds of a run read as full,
    not as a tenth of full (the average divided by the weight it has gathered)."""
    meter = BudgetPressure()
    meter.observe(0.0, waiting=True, rate=1.0, slots_full=True)
    meter.observe(2.0, waiting=True, rate=1.0, slots_full=True)
    assert meter.slots == pytest.approx(1.0) and meter.value == pytest.approx(0.0)


def test_an_observation_dated_before_the_last_one_changes_nothing() -> None:
    """The scheduler may report a time read before another report of the same pass. A time
    going back weighs nothing (a negative weight would push the averages out of [0, 1]), and
    the next interval starts from the latest time seen."""
    meter = BudgetPressure()
    meter.observe(0.0, waiting=False, rate=1.0)
    meter.observe(30.0, waiting=True, rate=1.0)
    before = (meter.share, meter.slots, meter.value)
    meter.observe(10.0, waiting=True, rate=1.0, slots_full=True)
    assert (meter.share, meter.slots, meter.value) == before
    meter.observe(30.0, waiting=True, rate=1.0, slots_full=True)  # no time since the latest
    assert (meter.share, meter.slots, meter.value) == before


def test_the_dead_zone_maps_a_fifth_of_the_time_waiting_to_none_and_the_rest_linearly() -> None:
    """A slot-bound run's submissions wait a few percent of the time (one token as each slot
    frees): that is no pressure. Past a fifth, pressure rises linearly to 1."""
    for share, value in ((0.2, 0.0), (0.6, 0.5), (1.0, 1.0)):
        meter = BudgetPressure()
        for second in range(200):  # waiting for that share of every second, far below the horizon
            meter.observe(second, waiting=True, rate=1.0)
            meter.observe(second + share, waiting=False, rate=1.0)
        assert meter.share == pytest.approx(share, abs=0.02), share
        assert meter.value == pytest.approx(value, abs=0.03), share


def _known_model() -> DurationModel:
    model = DurationModel()
    for d in (55.0, 58.0, 60.0, 62.0, 64.0, 66.0, 70.0, 75.0):
        model.observe("wf", d * 0.95, d * 1.05)
    return model


def test_first_polls_that_find_jobs_done_pull_the_first_poll_down_fast() -> None:
    """Tight brackets say 55-75 s, but jobs keep being done at the first poll (shorter jobs
    the brackets cannot see): within ten jobs the first poll is a fifth of what it was."""
    polls = AdaptivePolls(_known_model(), guess=7.0, pressure=lambda: 0.0)
    start = polls.first_delay("wf")
    for _ in range(10):
        polls.first_polled("wf", done=True)
    assert polls.first_delay("wf") < start / 5


def test_the_tracked_first_poll_settles_where_a_tenth_of_jobs_are_done() -> None:
    """Robbins-Monro: with P(done by t) = t/100, the first poll settles near t = 10."""
    polls = AdaptivePolls(_known_model(), guess=7.0, pressure=lambda: 0.0, step=0.05)
    seen = []
    for i in range(4000):
        t = polls.first_delay("wf")
        polls.first_polled("wf", done=(i * 0.6180339887) % 1.0 < min(1.0, t / 100))
        seen.append(t)
    late = sorted(seen[2000:])
    assert 7.0 < late[len(late) // 2] < 14.0


def test_durations_count_as_known_from_the_sixth_tight_bracket() -> None:
    """Six tight brackets of 55-66 s jobs (``min_samples``): the first poll comes near the
    shortest of them, not at a learning quarter of the median (some 15 s: a wasted poll per
    job for one job longer than needed)."""
    model = DurationModel()
    for d in (55.0, 58.0, 60.0, 62.0, 64.0, 66.0):
        model.observe("wf", d * 0.95, d * 1.05)
    polls = AdaptivePolls(model, guess=7.0, pressure=lambda: 0.0)
    assert polls.first_delay("wf") > 50.0


def test_first_polls_while_learning_do_not_move_the_first_poll_once_durations_are_known() -> None:
    """The tracked first poll starts from what the brackets say once they are known: first
    polls found done while learning (against a guess, not the durations) must not pull it."""
    model = DurationModel()
    polls = AdaptivePolls(model, guess=7.0, pressure=lambda: 0.0)
    for d in (55.0, 58.0, 60.0, 62.0, 64.0):
        model.observe("wf", d * 0.95, d * 1.05)
        polls.first_polled("wf", done=True)
    model.observe("wf", 66.0 * 0.95, 66.0 * 1.05)
    fresh = AdaptivePolls(model, guess=7.0, pressure=lambda: 0.0)
    assert polls.first_delay("wf") == fresh.first_delay("wf")


@pytest.mark.parametrize("pressure", [0.0, 1.0])
@pytest.mark.parametrize("known", [False, True], ids=["learning", "known"])
def test_a_job_polled_at_age_zero_is_not_polled_again_at_once(pressure: float, known: bool) -> None:
    """A poll of a job of age 0 (or of a few milliseconds) must not be followed by another at
    once: a job polled back to back, over and over, spends the request budget on nothing."""
    polls = AdaptivePolls(_known_model() if known else DurationModel(), guess=7.0, pressure=lambda: pressure)
    assert polls.next_delay("wf", 0.0, 1) > 0.0


def test_while_learning_a_job_is_polled_again_at_1_5x_its_age_or_2x_when_requests_are_contested() -> None:
    """Learning brackets each duration within 1.5x while requests are to spare, and spends
    fewer polls (a bracket within 2x) when each poll delays a submission."""
    spare = AdaptivePolls(DurationModel(), guess=7.0, pressure=lambda: 0.0)
    contested = AdaptivePolls(DurationModel(), guess=7.0, pressure=lambda: 1.0)
    assert spare.next_delay("wf", 10.0, 1) == pytest.approx(5.0)
    assert contested.next_delay("wf", 10.0, 1) == pytest.approx(10.0)


def test_under_full_pressure_a_young_job_is_next_polled_when_most_jobs_its_age_are_done() -> None:
    """Every request contested: a 10 s old job of a workflow whose jobs take 55-75 s is next
    polled where 80% of the jobs still running will have finished, not at 1.5x its age (five
    more polls a job, each a submission not made)."""
    model = _known_model()
    polls = AdaptivePolls(model, guess=7.0, pressure=lambda: 1.0)
    target = model.quantile("wf", 0.8)
    assert target is not None
    assert 10.0 + polls.next_delay("wf", 10.0, 1) == pytest.approx(target)
