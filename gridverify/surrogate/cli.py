"""The ``gridverify train`` subcommand: `add_train_parser` registers it on the main parser's subparsers;
the parsed arguments carry ``func`` (`run_train`), which returns the exit status."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gridverify.surrogate import train

__all__ = ["add_train_parser", "run_train"]


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``train CASE [--workers N] [--no-cache] [--cache-dir DIR]`` to ``subparsers``."""
    parser = subparsers.add_parser(
        "train",
        help="train a case's ACOPF surrogate from its case.toml (PYPOWER AC-OPF data, cached)",
        description=train.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_arguments(parser)
    parser.set_defaults(func=run_train)
    return parser


def run_train(args: argparse.Namespace) -> int:
    """Train and print the metrics; a bad case name or definition is reported in one line (status 2)."""
    try:
        return train.run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"gridverify train: {err}", file=sys.stderr)
        return 2
