"""Ship a trained checkpoint: copy it (fp16) into the package and write its record beside it.

    python -m ockd_ros.training.export RUN/final.pt --metrics RUN/matching.md \
        --data-command "ockd-gen ..." [--note "..."] [--out ockd_ros/weights/ockd_default.pt] \
        [--config training/configs/NAME.yaml]

The record (`<name>.yaml`) holds what reproduces and judges the weights: the training config,
the exact command, the data generation command and seed, the final validation scores and the
benchmark table. `--config` names the repository's config file for a run trained from a copy
elsewhere (an experiment that turned out worth shipping): it is accepted only if it gives
exactly the config the run recorded, and the command then names it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import re
import shlex
from pathlib import Path

import yaml

from ockd_ros.config import load_config
from ockd_ros.features.ockd import DEFAULT_CHECKPOINT
from ockd_ros.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from ockd_ros.training.train import TrainConfig

MAX_SHIPPED_MB = 25


def main(
    checkpoint: Path,
    out: Path,
    metrics: Path | None,
    data_commands: list[str],
    note: str = "",
    config: Path | None = None,
    local: bool = False,
) -> Path:
    """Write `out` (fp16 weights) and `out.with_suffix('.yaml')`; returns `out`.

    local: weights for this machine only (a user's fine-tuned objects), whose record may name
    its paths; weights to ship must not."""
    provenance = read_checkpoint(checkpoint)["provenance"]
    run_dir = checkpoint.parent
    command = provenance.get("command")
    if config is not None:
        command = _with_config(command, provenance.get("config"), config)
    record = {
        "weights": out.name,
        "trained_by": command,
        "finished": provenance.get("finished"),
        "steps": provenance.get("steps"),
        "training_data": provenance.get("data"),
        "data_generation": data_commands,
        "note": note or None,
        "final_validation": _last_row(run_dir / "validation.csv"),
        "benchmark": metrics.read_text() if metrics else None,
        "config": provenance.get("config"),
    }
    record = _relative_to(record, Path.cwd())
    absolute = [] if local else _absolute_paths(record)
    if absolute:
        raise ValueError(
            f"the record of {checkpoint} names paths of this machine ({', '.join(absolute[:3])}); "
            "train with paths inside the repository and export from its root"
        )
    save_checkpoint(load_checkpoint(checkpoint), out, provenance=provenance, half=True)
    size_mb = out.stat().st_size / 2**20
    if size_mb > MAX_SHIPPED_MB:
        raise ValueError(f"{out} is {size_mb:.1f} MB; shipped weights must stay ≤ {MAX_SHIPPED_MB}")
    text = yaml.safe_dump(record, sort_keys=False, width=100, allow_unicode=True)
    out.with_suffix(".yaml").write_text(text)
    return out


def _with_config(command: str | None, recorded: dict | None, config: Path) -> str:
    """`command` with its --config argument replaced by `config`, if `config` loads to exactly
    the `recorded` training config."""
    if command is None or recorded is None:
        raise ValueError("the checkpoint records no command or config to check --config against")
    if dataclasses.asdict(load_config(TrainConfig(), config)) != recorded:
        raise ValueError(f"{config} does not give the config the run recorded")
    words = shlex.split(command)
    if "--config" not in words:
        raise ValueError(f"the recorded command has no --config: {command}")
    words[words.index("--config") + 1] = str(config)
    return shlex.join(words)


def _relative_to(value, root: Path):
    """`value` with every path under `root` (the repository, where export runs) made relative."""
    if isinstance(value, dict):
        return {key: _relative_to(item, root) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_relative_to(item, root) for item in value]
    if isinstance(value, str):
        return value.replace(f"{root}/", "")
    return value


def _absolute_paths(value) -> list[str]:
    """Every word of the record's strings that is an absolute path."""
    if isinstance(value, dict):
        return [p for item in value.values() for p in _absolute_paths(item)]
    if isinstance(value, list | tuple):
        return [p for item in value for p in _absolute_paths(item)]
    if isinstance(value, str):
        return [word for word in value.split() if re.match(r"^~?/[\w.]", word)]
    return []


def _last_row(path: Path) -> dict | None:
    if not path.is_file():
        return None
    with path.open() as stream:
        rows = list(csv.DictReader(stream))
    return {key: float(value) for key, value in rows[-1].items()} if rows else None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--metrics", type=Path, help="benchmark table to record (Markdown)")
    parser.add_argument(
        "--data-command", action="append", default=[], help="a data generation command (repeat)"
    )
    parser.add_argument("--note", default="", help="anything else a reader of the record needs")
    parser.add_argument(
        "--config", type=Path, help="the repository's copy of the training config (checked)"
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="weights for this machine only (never shipped): its paths may be recorded",
    )
    args = parser.parse_args()
    print(
        main(
            args.checkpoint,
            args.out,
            args.metrics,
            args.data_command,
            args.note,
            args.config,
            args.local,
        )
    )
