"""An emulated Segmind workflows API: faithful to the contract, and nasty on demand.

Start one in-process with :func:`run_emulator` (tests, benchmarks, the offline demo), or standalone
with ``batcher emulator`` / ``python -m batcher.emulator``. It renders real outputs with Pillow,
bills, rate-limits, expires records and injects the faults a batch client must survive, all
reproducibly from a seed and on a passed-in clock.
"""

from __future__ import annotations

from .app import create_app
from .config import EmulatorConfig
from .persist import remembered_port
from .server import RunningEmulator, run_emulator
from .state import EmulatorState

__all__ = [
    "EmulatorConfig",
    "EmulatorState",
    "RunningEmulator",
    "create_app",
    "remembered_port",
    "run_emulator",
]
