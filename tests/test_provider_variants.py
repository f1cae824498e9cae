"""The engine against ways the real API may behave that the contract leaves open, end to end over
real sockets: which header it reads the key from."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from batcher.clock import ScaledClock
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.engine import ExitCode
from batcher.workflows import WorkflowRegistry

from .support import API_KEY, SPEED, run, settings_for, sketch_rows, write_jsonl

pytestmark = pytest.mark.anyio

FAST = EmulatorConfig(render="placeholder", duration_median=3.0, duration_spread=0.4)


@pytest.mark.parametrize("header", ["x-api-key", "bearer"])
async def test_a_run_completes_whichever_header_the_provider_reads_the_key_from(
    tmp_path: Path, registry: WorkflowRegistry, header: str
) -> None:
    """The seeds send ``Authorization: Bearer``, the SDK ``x-api-key``; which the API reads is not
    known, so batcher sends both. An emulator that read either could not tell a client that sent
    one only: against one that reads a single header, every submit and poll still carries the key."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    config = dataclasses.replace(FAST, auth_header=header, api_key=API_KEY)
    async with run_emulator(config, clock=clock) as emu:
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        requests = emu.stats()["requests"]
    assert result.exit_code is ExitCode.OK and result.stats.outcomes == {"completed": 3}
    assert set(requests["submit"]) == {"200"} and set(requests["poll"]) == {"200"}
