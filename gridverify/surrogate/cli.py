"""The ``gridverify train`` subcommand's run (`run_train`); its parser is a row of `gridverify.cli.COMMANDS`
(built without importing the training code, so that ``train --help`` stays fast)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

__all__ = ["run_train"]


def run_train(args: argparse.Namespace) -> int:
    """Train and print the metrics; a bad case name or definition is reported in one line (status 2). Ctrl-C
    or SIGTERM stops within seconds (status 130 / 143): the AC-OPF labels solved so far are kept in the
    dataset cache, and the same command resumes after them."""
    received: list[int] = []

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop) if _main_thread() else None
    try:
        from gridverify.surrogate import train  # torch, pandapower, PYPOWER: only when training

        return train.run(args)
    except (ValueError, FileNotFoundError, NotImplementedError) as err:
        print(f"gridverify train: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"gridverify train: {_stopped(err)}", file=sys.stderr)
        return 128 + (received[0] if received else signal.SIGINT)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _stopped(err: KeyboardInterrupt) -> str:
    """What an interrupt left behind, in one line."""
    from gridverify.surrogate.dataset import Interrupted

    if isinstance(err, Interrupted):
        if err.kept == 0:
            return f"interrupted before any of {err.total} AC-OPF labels was solved"
        if err.partial is None:
            return f"interrupted after {err.kept} of {err.total} AC-OPF labels (no cache: none kept)"
        return (
            f"interrupted after {err.kept} of {err.total} AC-OPF labels, kept in {err.partial}; "
            "the same command resumes from there"
        )
    return "interrupted (solved AC-OPF labels stay in the dataset cache: the same command resumes)"
