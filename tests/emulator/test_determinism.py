"""Same seed and same requests, same run: durations, fates and faults are reproducible."""

from __future__ import annotations

import aiohttp
import pytest

from batcher.emulator import EmulatorConfig

from .helpers import BLOG, serve

pytestmark = pytest.mark.anyio

NASTY = {
    "error_rate": 0.3,
    "lost_rate": 0.2,
    "slow_rate": 0.2,
    "drop_rate": 0.1,
    "fail_rate": 0.4,
    "duration_spread": 0.6,
    "render": "placeholder",
}
POSTS = ["sourdough", "bike lanes", "sourdough", "tax season", "bike lanes", "sourdough", "garden"] * 3


def _body(topic: str) -> dict[str, str]:
    return {"Blog_title_and_description": f"Title: Notes on {topic}\n\nDescription: A post.\n"}


async def _run(seed: int, topics: list[str]) -> tuple[list[object], list[tuple[str, int, float, bool]]]:
    """Submit ``topics`` one after another; the answers seen, and every job's draws."""
    answers: list[object] = []
    async with serve(EmulatorConfig(seed=seed, **NASTY)) as api:  # type: ignore[arg-type]
        for topic in topics:
            try:
                answers.append((await api.submit(BLOG, _body(topic))).status)
            except aiohttp.ClientConnectionError:
                answers.append("dropped")
        jobs = sorted(
            (j.input_hash, j.occurrence, j.fate.duration, j.fate.fails) for j in api.emu.state.store
        )
    return answers, jobs


async def test_the_same_seed_and_requests_give_the_same_faults_durations_and_fates() -> None:
    first = await _run(11, POSTS)
    assert first == await _run(11, POSTS)
    answers, jobs = first
    # The scenario is nasty enough to prove something: several kinds of answer, some failing jobs.
    assert {200, "dropped"} <= set(answers) and len(set(answers)) >= 4
    assert any(fails for *_, fails in jobs) and not all(fails for *_, fails in jobs)


async def test_a_different_seed_gives_a_different_run() -> None:
    assert await _run(11, POSTS) != await _run(12, POSTS)


async def test_a_jobs_draws_do_not_depend_on_request_order() -> None:
    """Durations and fates follow (seed, input, occurrence), not the interleaving of requests."""
    calm = {"seed": 5, "fail_rate": 0.5, "duration_spread": 0.8, "render": "placeholder"}
    draws = []
    for order in (POSTS, list(reversed(POSTS))):
        async with serve(EmulatorConfig(**calm)) as api:  # type: ignore[arg-type]
            for topic in order:
                assert (await api.submit(BLOG, _body(topic))).status == 200
            draws.append(sorted((j.input_hash, j.occurrence, j.fate) for j in api.emu.state.store))
    assert draws[0] == draws[1]
