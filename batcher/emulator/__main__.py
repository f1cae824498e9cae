"""``python -m batcher.emulator``: the emulator's CLI on its own."""

from __future__ import annotations

import sys

from ..cli_args import OneLineParser
from .cli import add_arguments, main

if __name__ == "__main__":
    parser = OneLineParser(prog="python -m batcher.emulator", description="Serve the Segmind emulator.")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
