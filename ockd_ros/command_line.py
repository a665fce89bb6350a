"""What every command line of the package shares: image sizes as `WxH`, and bad input reported
in one line.

Pure and cheap to import (no torch, no pybullet), so any entry point can use it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import yaml


def parse_size(text: str) -> tuple[int, int]:
    """(width, height) from `640x480`: an argparse `type`."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"size must look like 640x480, got {text!r}") from error
    return width, height


@contextmanager
def one_line_errors(prog: str, *more: type[Exception]) -> Iterator[None]:
    """Bad input ends the command with one line `<prog>: error: <why>` on stderr and exit status 1,
    without a traceback: a checkpoint, mesh, dataset, bag or config that cannot be used, a file
    that is missing, an unknown object name, and the errors in `more`. Anything else is a bug and
    keeps its traceback. (Status 2 stays argparse's: a malformed command line.)"""
    try:
        yield
    except Exception as error:
        if not isinstance(error, (*_bad_input_errors(), *more)):
            raise
        print(f"{prog}: error: {_message(error)}", file=sys.stderr)
        raise SystemExit(1) from None


def _bad_input_errors() -> tuple[type[Exception], ...]:
    # Imported on the error path only: the checkpoint module loads torch, and `ockd-gen` has no
    # other use for it. An error raised by one of these modules has loaded it already anyway.
    from ockd_ros.meshes import MeshLoadError
    from ockd_ros.model.checkpoint import CheckpointError
    from ockd_ros.model.pretrained import PretrainedWeightsError

    # ValueError covers configs (unknown keys, bad values) and the datasets' format errors
    # (BagError, SceneFormatError); YAMLError a config file that does not parse; KeyError an
    # unknown object name.
    return (
        OSError,
        ValueError,
        yaml.YAMLError,
        KeyError,
        CheckpointError,
        MeshLoadError,
        PretrainedWeightsError,
    )


def _message(error: Exception) -> str:
    # str() of a KeyError is the repr of its key: quoted, with escapes.
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.split()) or type(error).__name__
