"""Sim2real contrastive training of the object-centric keypoint network.

    ockd-train --config training/configs/cpu.yaml --data DATA_DIR --out RUN_DIR [--resume]
    torchrun --nproc_per_node 4 -m ockd_ros.training.train --config ... (DistributedDataParallel)

Writes to RUN_DIR: `last.pt` (resumable: weights, optimiser, step), `final.pt` (fp16 weights for
shipping, with config and provenance), `log.csv` (every loss term), `validation.csv` (MMA@5/7 on
held-out pairs) and `losses.png`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from ockd_ros.command_line import one_line_errors
from ockd_ros.config import load_config, merge_config
from ockd_ros.device import resolve_device
from ockd_ros.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from ockd_ros.model.network import NetworkConfig, OCKDNet
from ockd_ros.model.pretrained import load_pretrained
from ockd_ros.progress import progress_bar
from ockd_ros.training.augment import AugmentConfig
from ockd_ros.training.data import DataConfig, TrainingPairs, collate_pairs
from ockd_ros.training.hypercolumn import HypercolumnInit, initialise_hypercolumn
from ockd_ros.training.objective import LossConfig, compute_losses
from ockd_ros.training.validate import real_reference_pairs, validate, validate_real

LOG = logging.getLogger("ockd_ros.training")
MAX_BAD_STEPS = 20  # consecutive non-finite losses before the run stops


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20_000
    batch_size: int = 4
    lr: float = 1e-4
    lr_drop_fraction: float = 0.75  # lr ÷ 10 for the last quarter
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    threads: int = 0  # torch CPU threads; 0 = torch's default
    log_every: int = 10
    checkpoint_every: int = 200
    validate_every: int = 500
    validation_pairs: int = 32
    # A BOP folder of real frames (e.g. ../shared/data/lmo) whose matching against renders is
    # logged at each validation: the sim2real curve. Watched only, never trained on; skipped with
    # a warning when the folder does not exist.
    validation_bop: str | None = None
    validation_bop_pairs: int = 60
    init: str | None = None  # start from this checkpoint's weights (fine-tuning); its network wins
    # ImageNet weights for the encoder from an installed package (ockd_ros.model.pretrained);
    # ignored with `init`, whose weights win.
    pretrained_encoder: bool = False
    encoder_lr_scale: float = 1.0  # the encoder learns at lr × this (pretrained filters move less)
    # The projection of the encoder's hypercolumn into the descriptor (`descriptor_skips`) learns
    # at lr × this; 0 keeps its initial orthogonal map, so training can only add to it.
    hypercolumn_lr_scale: float = 1.0
    # How the projection starts (training.hypercolumn): the network's random orthogonal map, or
    # a whitened PCA of the training frames' hypercolumns. Ignored with `init` and on resume.
    hypercolumn_init: HypercolumnInit = field(default_factory=HypercolumnInit)
    # Encoder BatchNorm keeps its running statistics (ImageNet's when pretrained): batches of 4
    # synthetic frames are too few and too uniform to re-estimate them.
    frozen_encoder_statistics: bool = False
    network: NetworkConfig = field(default_factory=NetworkConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


class TrainingError(RuntimeError):
    """The run cannot continue; the message says why. Checkpoints on disk stay valid."""


def main(conf: TrainConfig, data_dir: Path, out_dir: Path, resume: bool = False) -> Path:
    """Train; returns the path of the final fp16 checkpoint."""
    distributed = _init_distributed()
    rank = dist.get_rank() if distributed else 0
    device = _device_for_rank(conf.device, distributed)
    if conf.threads:
        torch.set_num_threads(conf.threads)
    # The same seeds on every rank: ranks hold different samples (DistributedSampler), each
    # augmented from its own index, so their draws differ where their data do, and ranks given
    # the same batch take the same step (test/training/test_torchrun.py checks it).
    torch.manual_seed(conf.seed)
    out_dir.mkdir(parents=True, exist_ok=True)

    real_frames = _real_validation_folder(conf.validation_bop) if rank == 0 else None
    train_set = TrainingPairs(data_dir, conf.data, conf.augment, split="train", seed=conf.seed)
    val_set = TrainingPairs(data_dir, conf.data, None, split="val", seed=conf.seed)
    model = _initial_model(conf)
    if not conf.init and not (resume and (out_dir / "last.pt").exists()):
        _initialise_hypercolumn(model, train_set, conf)
    model = model.to(device)
    optimiser = _optimiser(model, conf)
    step = _resume(out_dir / "last.pt", model, optimiser, conf) if resume else 0
    if rank == 0:
        for name in ("log.csv", "validation.csv"):  # rows logged after the checkpoint are redone
            _CsvLog(out_dir / name).drop_after(step)
    # No collective in forward (buffers are synced once, at start): a rank whose batch has no
    # I0 render runs the network once where the others run it twice; only backward must be in
    # step. BatchNorm statistics are rank 0's either way: it alone validates and saves them.
    trained = (
        torch.nn.parallel.DistributedDataParallel(model, forward_sync_buffers=False)
        if distributed
        else model
    )

    loader = _loader(train_set, conf, distributed, step)
    generator = torch.Generator().manual_seed(conf.seed * 1000 + step)
    progress = progress_bar(
        total=conf.steps, initial=step, enabled=rank == 0, desc="train", unit="step"
    )
    bad_steps = 0
    log = _CsvLog(out_dir / "log.csv") if rank == 0 else None
    batches = _forever(loader)
    if rank == 0 and step == 0:  # the starting point of the validation curves
        _validate(model, val_set, conf, device, step, out_dir, real_frames)
    while step < conf.steps:
        _set_lr(optimiser, conf, step)
        batch = next(batches).to(device)
        _train_mode(trained, model, conf)
        terms = compute_losses(trained, batch, conf.loss, generator)
        problem = _unusable(terms)
        if distributed:
            problem = _unusable_on_any_rank(problem, device)
        if problem:
            bad_steps += 1
            LOG.warning("step %d: %s, batch skipped", step, problem)
            if bad_steps >= MAX_BAD_STEPS:
                raise TrainingError(
                    f"{bad_steps} consecutive unusable batches at step {step} (last: {problem}); "
                    f"checkpoints in {out_dir} are from the last good step"
                )
            continue
        bad_steps = 0
        optimiser.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimiser.step()
        step += 1
        progress.update(1)
        if rank != 0:
            continue
        if step % conf.log_every == 0:
            log.write({"step": step, "lr": optimiser.param_groups[-1]["lr"], **_floats(terms)})
            progress.set_postfix_str(_format(terms))
        if step % conf.checkpoint_every == 0 or step == conf.steps:
            _save_resumable(out_dir / "last.pt", model, optimiser, step, conf)
        if step % conf.validate_every == 0 or step == conf.steps:
            _validate(model, val_set, conf, device, step, out_dir, real_frames)
    progress.close()
    if distributed:
        dist.destroy_process_group()
    if rank != 0:
        return out_dir / "final.pt"
    return _finish(model, conf, data_dir, out_dir, step)


def _unusable(terms: dict[str, torch.Tensor] | None) -> str | None:
    """Why a batch cannot be trained on, or None."""
    if terms is None:
        return "no valid correspondences on any object"
    if not torch.isfinite(terms["total"]):
        return f"non-finite loss ({_format(terms)})"
    return None


def _unusable_on_any_rank(problem: str | None, device: torch.device) -> str | None:
    """Why this step is skipped on every rank, or None.

    Backward is a collective under DDP: a rank that skipped alone would leave the others
    waiting for its gradients, or pair its next ones with theirs, so one rank's unusable batch
    skips the step everywhere.
    """
    unusable = torch.tensor([problem is not None], dtype=torch.int32, device=device)
    dist.all_reduce(unusable, op=dist.ReduceOp.MAX)
    if problem is None and unusable.item():
        return "another rank's batch is unusable"
    return problem


def _init_distributed() -> bool:
    """torchrun sets WORLD_SIZE; one process on one CPU needs no process group."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def _device_for_rank(device: str, distributed: bool) -> torch.device:
    resolved = resolve_device(device)
    if distributed and resolved.type == "cuda":
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(resolved)
    return resolved


def _loader(dataset, conf: TrainConfig, distributed: bool, step: int) -> DataLoader:
    generator = torch.Generator().manual_seed(conf.seed + step)
    sampler = DistributedSampler(dataset, seed=conf.seed) if distributed else None
    return DataLoader(
        dataset,
        batch_size=conf.batch_size,
        sampler=sampler or RandomSampler(dataset, generator=generator),
        num_workers=conf.workers,
        collate_fn=collate_pairs,
        drop_last=True,
        persistent_workers=conf.workers > 0,
    )


def _forever(loader: DataLoader):
    epoch = 0
    while True:
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _initial_model(conf: TrainConfig) -> OCKDNet:
    if conf.init:
        return load_checkpoint(conf.init)
    model = OCKDNet(conf.network)
    if conf.pretrained_encoder:
        path = load_pretrained(model.encoder, conf.network.encoder)
        LOG.info("encoder initialised from %s", path)
    return model


def _initialise_hypercolumn(model: OCKDNet, train_set: TrainingPairs, conf: TrainConfig) -> None:
    init = conf.hypercolumn_init
    if init.method == "orthogonal":
        return
    rng = np.random.default_rng(conf.seed)
    indices = rng.choice(len(train_set), min(init.frames, len(train_set)), replace=False)
    images = [train_set.raw(int(index))["image1"] for index in indices]
    initialise_hypercolumn(model, images, init, conf.seed)
    LOG.info("hypercolumn projection: %s of %d training frames", init.method, len(images))


def _optimiser(model: OCKDNet, conf: TrainConfig) -> torch.optim.Optimizer:
    """Adam with the encoder and the hypercolumn projection in their own groups, whose rates
    are scaled by `encoder_lr_scale` and `hypercolumn_lr_scale`."""
    encoder = list(model.encoder.parameters())
    projection = list(model.skip_head.parameters()) if model.skip_levels else []
    own = {id(p) for p in encoder + projection}
    rest = [p for p in model.parameters() if id(p) not in own]
    groups = [
        {"params": encoder, "lr_scale": conf.encoder_lr_scale},
        {"params": projection, "lr_scale": conf.hypercolumn_lr_scale},
        {"params": rest, "lr_scale": 1.0},
    ]
    return torch.optim.Adam(groups, lr=conf.lr, weight_decay=conf.weight_decay)


def _train_mode(trained: torch.nn.Module, model: OCKDNet, conf: TrainConfig) -> None:
    trained.train()
    if conf.frozen_encoder_statistics:
        for module in model.encoder.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def _set_lr(optimiser, conf: TrainConfig, step: int) -> None:
    factor = 0.1 if step >= conf.lr_drop_fraction * conf.steps else 1.0
    for group in optimiser.param_groups:
        group["lr"] = conf.lr * factor * group.get("lr_scale", 1.0)


def _save_resumable(path: Path, model, optimiser, step: int, conf: TrainConfig) -> None:
    save_checkpoint(
        model,
        path,
        provenance={"config": dataclasses.asdict(conf)},
        extra={"optimizer": optimiser.state_dict(), "step": step},
    )


def _resume(path: Path, model: OCKDNet, optimiser, conf: TrainConfig) -> int:
    if not path.is_file():
        raise TrainingError(f"--resume: no checkpoint at {path}")
    payload = read_checkpoint(path)
    if merge_config(NetworkConfig(), payload["network"]) != model.conf:
        raise CheckpointError(f"{path} was trained with another network config")
    model.load_state_dict(payload["state_dict"])
    optimiser.load_state_dict(payload["optimizer"])
    LOG.info("resumed from %s at step %d", path, payload["step"])
    return int(payload["step"])


def _real_validation_folder(bop_dir: str | None) -> Path | None:
    """The BOP folder of the real-frame validation, or None when there is none.

    A folder that does not exist (a clean clone without ../shared/data) skips the real-frame
    validation with one warning instead of stopping the run: it is watched, never trained on.
    """
    if not bop_dir:
        return None
    folder = Path(bop_dir)
    if not folder.exists():
        LOG.warning(
            "real-frame validation skipped: validation_bop folder %s (%s) does not exist",
            folder,
            folder.absolute(),
        )
        return None
    return folder


def _validate(
    model, val_set, conf: TrainConfig, device, step: int, out_dir: Path, real_frames: Path | None
) -> None:
    model.eval()
    scores = validate(model, val_set, conf.validation_pairs, device)
    if real_frames is not None:
        scores |= validate_real(
            model, _real_pairs(str(real_frames), conf.validation_bop_pairs), device
        )
    _CsvLog(out_dir / "validation.csv").write({"step": step, **scores})
    LOG.info("step %d validation: %s", step, scores)


@functools.cache
def _real_pairs(bop_dir: str, count: int) -> list:
    return real_reference_pairs(Path(bop_dir), count)


def _finish(model: OCKDNet, conf: TrainConfig, data_dir: Path, out_dir: Path, step: int) -> Path:
    from ockd_ros.training.plots import plot_losses

    provenance = {
        # the console script's name, not sys.argv[0]: a machine's path says nothing to a reader
        "command": shlex.join(["ockd-train", *sys.argv[1:]]),
        "config": dataclasses.asdict(conf),
        "data": str(data_dir),
        "steps": step,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "torch": str(torch.__version__),
    }
    final = save_checkpoint(model, out_dir / "final.pt", provenance=provenance, half=True)
    plot_losses(out_dir / "log.csv", out_dir / "validation.csv", out_dir / "losses.png")
    return final


class _CsvLog:
    """Appends rows to a CSV file; the header comes from the first row (resumed runs append)."""

    def __init__(self, path: Path):
        self.path = path

    def drop_after(self, step: int) -> None:
        if not self.path.exists():
            return
        with self.path.open() as stream:
            reader = csv.DictReader(stream)
            fields, rows = reader.fieldnames, [r for r in reader if int(r["step"]) <= step]
        with self.path.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(row), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


def _floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(value.detach()) for name, value in terms.items()}


def _format(terms: dict[str, torch.Tensor]) -> str:
    return " ".join(f"{name}={value:.3f}" for name, value in _floats(terms).items())


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the object-centric keypoint network.")
    parser.add_argument("--config", type=Path, help="YAML overrides of TrainConfig")
    parser.add_argument("--data", type=Path, required=True, help="folder of generated scenes")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--steps", type=int, help="override the number of steps")
    parser.add_argument("--init", type=Path, help="override the checkpoint to start from")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with one_line_errors("ockd-train", TrainingError):
        conf = load_config(TrainConfig(), args.config) if args.config else TrainConfig()
        if args.steps:
            conf = dataclasses.replace(conf, steps=args.steps)
        if args.init:
            conf = dataclasses.replace(conf, init=str(args.init))
        final = main(conf, args.data, args.out, args.resume)
    print(f"final checkpoint: {final}")


if __name__ == "__main__":
    cli()
