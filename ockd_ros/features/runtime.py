"""Where the network's forward pass runs: torch, or a CPU inference engine on an exported graph.

`runtime` in the ockd backend config:
- `torch`: the network as loaded (CUDA in float16, the CPU in float32);
- `openvino`, `onnxruntime`: the network exported to ONNX and run by that engine on the CPU, in
  float32 (outputs within ~1e-6 of torch's);
- `auto`: on the CPU, the fastest engine installed (OpenVINO, then ONNX Runtime: 40 and 57 ms
  against torch's 91 at 640×480 on a quiet 2-core CPU, docs/benchmarks.md), else torch.
  Torch on CUDA, with test-time BatchNorm (it needs each image's own statistics, which an
  exported graph has frozen), and for a network passed in as an object rather than loaded from
  a checkpoint (training's validation and tests hand over networks that keep changing:
  exporting each would cost more than it saves).

The checkpoint stays the source of truth. Its exported graph is cached beside the template banks,
in `$XDG_CACHE_HOME/ockd_ros/networks/ockd-<hash>.onnx`, the hash covering the network's config
and weights and the export settings; a missing file is exported (seconds, once per checkpoint),
an unreadable one exported again with a warning. Every engine is checked against torch on a probe
image when it loads; an engine that is not installed, fails to load or disagrees leaves torch
running, with a warning saying why. The engines are optional: `pip install 'ockd_ros[engine]'`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ockd_ros.device import resolve_device
from ockd_ros.model.network import NetworkOutput, OCKDNet, batch_statistics

LOG = logging.getLogger(__name__)
RUNTIMES = ("auto", "torch", "openvino", "onnxruntime")
ENGINES = ("openvino", "onnxruntime")  # what `auto` tries, fastest first
EXPORT_FORMAT = 1  # bump when the exported graph's inputs, outputs or wrapper change
OPSET = 17
INPUT = "images"
OUTPUTS = ("reliability", "desc_intra", "desc_inter")
# Largest difference from torch allowed on the probe image at load; float32 engines differ by
# ~1e-6, a wrong graph (sizes frozen at export, a broken file) by far more.
PROBE_TOLERANCE = 1e-3


class NetworkRunner(Protocol):
    """Runs the network on a batch of B same-size H×W×3 uint8 RGB images."""

    name: str
    device: torch.device  # where the outputs are
    dtype: torch.dtype  # the precision the network computes in

    def __call__(self, images: np.ndarray) -> NetworkOutput: ...


class EngineUnavailableError(RuntimeError):
    """An inference engine cannot run this network here; the message says why."""


def create_runner(
    model: OCKDNet, runtime: str, device: str, test_time_bn: bool, from_checkpoint: bool
) -> NetworkRunner:
    """The runner `runtime` asks for (see the module docstring); torch where no engine can run.

    device: the torch device setting ('auto', 'cpu', 'cuda', ...); engines run on the CPU.
    from_checkpoint: whether `model` was loaded from a checkpoint file (else `auto` keeps torch).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime in ENGINES:
        if device not in ("auto", "cpu"):
            raise ValueError(f"runtime {runtime!r} runs on the CPU, but device is {device!r}")
        if test_time_bn:
            raise ValueError(f"runtime {runtime!r} cannot normalise with each image's statistics")
        candidates: tuple[str, ...] = (runtime,)
    elif runtime == "auto" and resolve_device(device).type == "cpu" and not test_time_bn:
        candidates = ENGINES if from_checkpoint else ()
    else:
        candidates = ()
    for engine in candidates:
        try:
            return load_engine(engine, model)
        except EngineUnavailableError as error:
            # `auto` tries engines that may well not be installed: only a failure is news.
            if runtime == engine or not isinstance(error.__cause__, ImportError):
                LOG.warning("%s", error)
    if runtime in ENGINES:
        LOG.warning("the network runs in torch instead of %s", runtime)
        device = "cpu"
    return TorchRunner(model, resolve_device(device), test_time_bn)


class TorchRunner:
    name = "torch"

    def __init__(self, model: OCKDNet, device: torch.device, test_time_bn: bool = False):
        self.device = device
        # channels-last convolutions are ~1.7× faster on CPU; on CUDA, fp16 halves the time.
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.model = model.to(device=device, dtype=self.dtype, memory_format=torch.channels_last)
        self.test_time_bn = test_time_bn

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> NetworkOutput:
        if not images.flags.writeable:  # e.g. decoded from a message buffer; torch wants to own it
            images = images.copy()
        tensor = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2)
        tensor = (tensor.to(self.dtype) / 255.0).contiguous(memory_format=torch.channels_last)
        norm_mode = batch_statistics(self.model) if self.test_time_bn else contextlib.nullcontext()
        with norm_mode:
            out = self.model(tensor)
        return NetworkOutput(
            out.reliability.float(), out.desc_intra.float(), out.desc_inter.float()
        )


class _EngineRunner:
    """What both engines share: CPU, float32, numpy in and out."""

    name = ""
    device = torch.device("cpu")
    dtype = torch.float32

    def __call__(self, images: np.ndarray) -> NetworkOutput:
        outputs = self._run(np.ascontiguousarray(images))
        return NetworkOutput(*(torch.from_numpy(np.asarray(output)) for output in outputs))

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError


class OnnxRuntimeRunner(_EngineRunner):
    name = "onnxruntime"

    def __init__(self, path: Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same budget as torch's
        options.log_severity_level = 3  # errors only
        # Idle engine threads would otherwise spin and take the cores from the matching after.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        return self.session.run(list(OUTPUTS), {INPUT: images})


class OpenVinoRunner(_EngineRunner):
    """OpenVINO on the CPU in float32 (its default there is bfloat16 where the CPU has it).

    One model compiled for any image size serves every call; an image size seen again (frames of
    one camera, batches of templates) gets a model compiled for exactly that size (8–30 % faster
    in runs here), at the cost of a compilation and its memory; the two most recent are kept.
    """

    name = "openvino"
    STATIC_AFTER = 2  # calls with one input shape before it gets its own compiled model
    STATIC_MODELS = 2  # fixed-shape models kept; each holds its activations (~60 MB at 640×480)
    SHAPES_COUNTED = 64  # input shapes remembered for STATIC_AFTER

    def __init__(self, path: Path):
        import openvino

        self.core = openvino.Core()
        self.model = self.core.read_model(str(path))
        self.config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),  # the same budget as torch's
        }
        self.any_shape = self.core.compile_model(self.model, "CPU", self.config)
        self.fixed_shape: collections.OrderedDict[tuple, object] = collections.OrderedDict()
        self.calls: collections.OrderedDict[tuple, int] = collections.OrderedDict()

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        result = self._compiled_for(images.shape)(images)
        return [result[index] for index in range(len(OUTPUTS))]

    def _compiled_for(self, shape: tuple[int, ...]):
        if shape in self.fixed_shape:
            self.fixed_shape.move_to_end(shape)
            return self.fixed_shape[shape]
        self.calls[shape] = self.calls.pop(shape, 0) + 1
        if len(self.calls) > self.SHAPES_COUNTED:
            self.calls.popitem(last=False)
        if self.calls[shape] < self.STATIC_AFTER:
            return self.any_shape
        model = self.model.clone()
        model.reshape(list(shape))
        self.fixed_shape[shape] = self.core.compile_model(model, "CPU", self.config)
        if len(self.fixed_shape) > self.STATIC_MODELS:
            self.fixed_shape.popitem(last=False)
        return self.fixed_shape[shape]


ENGINE_RUNNERS = {"openvino": OpenVinoRunner, "onnxruntime": OnnxRuntimeRunner}


def load_engine(engine: str, model: OCKDNet, cache_dir: Path | None = None) -> NetworkRunner:
    """`engine` running `model`'s exported graph, checked against torch on a probe image.

    The graph comes from `cache_dir` (default `default_network_cache_dir()`) or is exported
    there. Raises `EngineUnavailableError` when the engine is not installed or cannot run it.
    """
    for package in (engine, "onnx"):  # onnx: what torch exports the network with
        try:
            __import__(package)
        except ImportError as error:
            raise EngineUnavailableError(
                f"{package} is not installed (pip install {package}; the extra "
                "'ockd_ros[engine]' installs OpenVINO and onnx)"
            ) from error
    model = model.to(device="cpu", dtype=torch.float32).eval()
    path = exported_path(model, cache_dir)
    if path.is_file():
        try:
            return _checked_runner(engine, model, path)
        except EngineUnavailableError:
            raise
        except Exception as error:  # each engine has its own errors for an unreadable file
            LOG.warning("exported network %s is unreadable (%s): exporting it again", path, error)
    LOG.info("exporting the network for %s to %s (once per checkpoint)", engine, path)
    try:
        export_network(model, path)
    except Exception as error:  # the exporter raises many types for what it cannot export
        raise EngineUnavailableError(f"cannot export the network for {engine}: {error}") from error
    try:
        return _checked_runner(engine, model, path)
    except EngineUnavailableError:
        raise
    except Exception as error:
        raise EngineUnavailableError(f"{engine} cannot run the exported {path}: {error}") from error


def _checked_runner(engine: str, model: OCKDNet, path: Path) -> NetworkRunner:
    runner = ENGINE_RUNNERS[engine](path)
    difference = probe_difference(runner, model)
    if not difference <= PROBE_TOLERANCE:
        raise EngineUnavailableError(
            f"{engine} differs from torch by {difference:.2g} (> {PROBE_TOLERANCE}) on a probe "
            f"image with {path}"
        )
    return runner


def probe_difference(runner: NetworkRunner, model: OCKDNet) -> float:
    """Largest absolute difference between `runner`'s outputs and torch's on two random images
    of an odd size (unlike the export's sample, so sizes frozen into a graph show)."""
    images = np.random.default_rng(0).integers(0, 256, (2, 47, 61, 3), dtype=np.uint8)
    with torch.inference_mode():
        expected = model(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0)
    got = runner(images)
    return max(
        float((getattr(got, name).float() - getattr(expected, name)).abs().max())
        if getattr(got, name).shape == getattr(expected, name).shape
        else float("inf")
        for name in OUTPUTS
    )


# ---------------------------------------------------------------------------------------------
# Export


class ExportedNetwork(torch.nn.Module):
    """The graph the engines run: uint8 images B×H×W×3 → reliability, desc_intra, desc_inter.

    Taking the images as they come saves a transposed float copy per call outside the engine.
    """

    def __init__(self, model: OCKDNet):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(images.permute(0, 3, 1, 2).float() / 255.0)
        return out.reliability, out.desc_intra, out.desc_inter


def export_network(model: OCKDNet, path: Path) -> Path:
    """Export `model` to ONNX at `path` (atomically), batch and image size left free.

    The TorchScript exporter: it keeps the image size symbolic here in seconds, where
    `torch.export` takes minutes to reason about the same shapes. It warns on the network's
    input check (a constant channel count); wrong graphs are caught by the probe at load.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".onnx")
    os.close(handle)
    sample = torch.zeros((1, 64, 64, 3), dtype=torch.uint8)
    free = {0: "batch", 1: "height", 2: "width"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                ExportedNetwork(model).eval(),
                (sample,),
                tmp_name,
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT],
                output_names=list(OUTPUTS),
                dynamic_axes={INPUT: free, **{name: {0: "batch"} for name in OUTPUTS}},
            )
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def default_network_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/ockd_ros/networks`, beside the template banks' `templates` folder."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "ockd_ros" / "networks"


def exported_path(model: OCKDNet, cache_dir: Path | None = None) -> Path:
    """Where `model`'s exported graph is cached, named by its config, weights and export."""
    key = {
        "format": EXPORT_FORMAT,
        "opset": OPSET,
        "network": dataclasses.asdict(model.conf),
        "weights_sha1": weights_digest(model),
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return Path(cache_dir or default_network_cache_dir()) / f"ockd-{digest[:16]}.onnx"


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-1 of a network's tensors by name, as float32 (the checkpoint's content)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
