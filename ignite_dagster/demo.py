"""`ignite demo` (placeholder until the demo lands)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-running", action="store_true")


def run_demo(settings, args) -> int:
    raise NotImplementedError
