"""On-disk format of generated scenes: one folder per scene, written atomically, read with checks.

Layout of a scene folder (see training/README.md for the full description):

    scene_000042/
      scene.json             metadata, written last (format version, instances, frames, ...)
      rgb/000000.png         H×W RGB (8-bit PNG)
      depth/000000.png       H×W uint16 PNG, depth along the optical axis in `depth_unit` metres
      labels/000000.png      H×W uint16 PNG, instance id (0 = nothing rendered)
      i0/000000_002.png      RGBA crop: instance 2 rendered alone (I0), alpha = its mask

A writer fills a hidden temporary folder next to the final one and renames it when the scene is
complete, so a crash never leaves a folder named `scene_*`; readers reject anything that does not
validate with a `SceneFormatError` naming the folder and the problem.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ockd_ros.geometry import check_intrinsics, invert_pose

FORMAT_VERSION = 1
SCENE_FILE = "scene.json"
SCENE_NAME = re.compile(r"^scene_\d{6,}$")
INSTANCE_KINDS = ("table", "floor", "object", "distractor")
# 0.1 mm steps: sub-millimetre depth for the occlusion check, up to 6.55 m in a uint16.
DEFAULT_DEPTH_UNIT = 1e-4


class SceneFormatError(ValueError):
    """A scene folder that is incomplete, corrupt or of another format version."""

    def __init__(self, folder: Path, problem: str):
        super().__init__(f"invalid scene folder {folder}: {problem}")
        self.folder = folder
        self.problem = problem


def scene_name(index: int) -> str:
    return f"scene_{index:06d}"


@dataclass(frozen=True)
class Instance:
    """Something rendered in a scene; its id is the value of its pixels in the label maps."""

    id: int
    name: str
    kind: str  # 'table' | 'floor' | 'object' | 'distractor'
    mesh: str  # mesh file, or '<generated>' for the table and primitive distractors
    symmetric: bool
    T_world_obj: np.ndarray  # 4×4; scenes are static, so one pose serves every frame


@dataclass(frozen=True)
class I0Crop:
    """An object rendered alone (I0) for one frame: the crop `box` of the full frame it covers."""

    instance_id: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in full-frame pixels
    file: str  # relative to the scene folder


@dataclass(frozen=True)
class FrameInfo:
    index: int
    K: np.ndarray  # 3×3
    T_world_cam: np.ndarray  # 4×4, OpenCV optical frame
    visible: tuple[int, ...]  # ids of the objects with enough visible pixels in this frame
    i0: tuple[I0Crop, ...]

    @property
    def files(self) -> tuple[str, str, str]:
        """rgb, depth and labels paths of this frame, relative to the scene folder."""
        stem = f"{self.index:06d}.png"
        return f"rgb/{stem}", f"depth/{stem}", f"labels/{stem}"

    def object_pose(self, instance: Instance) -> np.ndarray:
        """T_cam_obj: the pose of `instance` in this frame's camera."""
        return invert_pose(self.T_world_cam) @ instance.T_world_obj


@dataclass(frozen=True)
class SceneMeta:
    """Everything in scene.json, parsed and checked."""

    name: str
    index: int
    seed: int
    size: tuple[int, int]  # width, height
    depth_unit: float  # metres per step of the stored depth
    instances: tuple[Instance, ...]
    frames: tuple[FrameInfo, ...]
    i0_background: tuple[int, int, int]  # colour around the object in I0 renders
    extra: dict[str, Any]  # lighting, textures, generator config: for provenance, not for loading

    def instance(self, instance_id: int) -> Instance:
        for instance in self.instances:
            if instance.id == instance_id:
                return instance
        raise KeyError(f"{self.name} has no instance {instance_id}")


@dataclass
class FrameData:
    """One frame read back from disk.

    rgb: H×W×3 uint8. depth: H×W float32 metres, 0 where nothing was rendered.
    labels: H×W int32 instance ids. i0: per object id, its I0 crop as (rgb h×w×3 uint8,
    mask h×w bool, box).
    """

    info: FrameInfo
    rgb: np.ndarray
    depth: np.ndarray
    labels: np.ndarray
    i0: dict[int, tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]]


class SceneWriter:
    """Writes one scene folder atomically.

    Use as a context manager: frames go to a hidden temporary folder; `commit` writes scene.json
    and renames the folder to its final name. Leaving the block without `commit` (an error, a
    rejected scene) deletes the temporary folder.
    """

    def __init__(
        self,
        root: Path,
        name: str,
        depth_unit: float = DEFAULT_DEPTH_UNIT,
        png_compression: int = 1,
    ):
        if not SCENE_NAME.match(name):
            raise ValueError(f"scene name {name!r} does not match {SCENE_NAME.pattern}")
        self.root = Path(root)
        self.final = self.root / name
        self.tmp = self.root / f".{name}.tmp-{socket.gethostname()}-{os.getpid()}"
        self.depth_unit = depth_unit
        self._png = [cv2.IMWRITE_PNG_COMPRESSION, int(png_compression)]

    def __enter__(self) -> SceneWriter:
        self.root.mkdir(parents=True, exist_ok=True)
        # Leftovers of crashed runs of this scene: never valid, safe to drop.
        for stale in self.root.glob(f".{self.final.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        for sub in ("rgb", "depth", "labels", "i0"):
            (self.tmp / sub).mkdir(parents=True)
        return self

    def __exit__(self, *exc_info) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write_frame(
        self, index: int, rgb: np.ndarray, depth: np.ndarray, labels: np.ndarray
    ) -> None:
        """rgb H×W×3 uint8, depth H×W float metres (0 = none), labels H×W int instance ids."""
        if labels.max(initial=0) > np.iinfo(np.uint16).max:
            raise ValueError("more than 65535 instances in one frame")
        stem = f"{index:06d}.png"
        steps = np.round(depth / self.depth_unit)
        # Depth beyond the uint16 range is dropped (marked as nothing) rather than wrapped.
        steps[(steps > np.iinfo(np.uint16).max) | ~np.isfinite(steps)] = 0
        self._imwrite(f"rgb/{stem}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self._imwrite(f"depth/{stem}", steps.astype(np.uint16))
        self._imwrite(f"labels/{stem}", labels.astype(np.uint16))

    def write_i0(self, index: int, instance_id: int, rgb: np.ndarray, mask: np.ndarray) -> str:
        """Store an I0 crop (h×w×3 uint8 and h×w bool); returns its path in the scene folder."""
        rel = f"i0/{index:06d}_{instance_id:03d}.png"
        bgra = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), mask.astype(np.uint8) * 255])
        self._imwrite(rel, bgra)
        return rel

    def commit(self, meta: dict[str, Any]) -> Path:
        """Write scene.json and publish the folder; returns the final path.

        If another process published the same scene meanwhile, its folder is kept and ours dropped.
        """
        meta = {"format_version": FORMAT_VERSION, "depth_unit": self.depth_unit, **meta}
        meta["name"] = self.final.name
        path = self.tmp / SCENE_FILE
        with path.open("w") as stream:
            json.dump(meta, stream, indent=1)
            stream.flush()
            os.fsync(stream.fileno())
        try:
            os.rename(self.tmp, self.final)
        except OSError:
            if not self.final.is_dir():
                raise
        return self.final

    def _imwrite(self, rel: str, image: np.ndarray) -> None:
        if not cv2.imwrite(str(self.tmp / rel), image, self._png):
            raise OSError(f"cannot write {self.tmp / rel}")


def pose_to_json(T: np.ndarray) -> list[list[float]]:
    return np.asarray(T, dtype=np.float64).tolist()


def read_scene(folder: str | Path, check_files: bool = True) -> SceneMeta:
    """Parse and check `folder`/scene.json; with `check_files`, every frame file must exist.

    Raises `SceneFormatError` naming the folder and the problem.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SceneFormatError(folder, "not a directory")
    path = folder / SCENE_FILE
    if not path.is_file():
        raise SceneFormatError(folder, f"no {SCENE_FILE}: the scene was never completed")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SceneFormatError(folder, f"{SCENE_FILE} is not readable JSON ({error})") from error
    try:
        meta = _parse_meta(raw)
    except (KeyError, TypeError, ValueError) as error:
        problem = f"missing key {error}" if isinstance(error, KeyError) else str(error)
        raise SceneFormatError(folder, f"{SCENE_FILE}: {problem}") from error
    if check_files:
        for frame in meta.frames:
            for rel in (*frame.files, *(crop.file for crop in frame.i0)):
                if not (folder / rel).is_file():
                    raise SceneFormatError(folder, f"missing file {rel}")
    return meta


def _parse_meta(raw: Any) -> SceneMeta:
    if not isinstance(raw, dict):
        raise ValueError("expected a JSON object")
    version = raw["format_version"]
    if version != FORMAT_VERSION:
        raise ValueError(f"format version {version}, this reader reads {FORMAT_VERSION}")
    width, height = (int(v) for v in raw["size"])
    if width <= 0 or height <= 0:
        raise ValueError(f"bad image size {raw['size']}")
    depth_unit = float(raw["depth_unit"])
    if not depth_unit > 0:
        raise ValueError(f"depth_unit must be positive, got {depth_unit}")
    instances = tuple(_parse_instance(item) for item in raw["instances"])
    ids = [instance.id for instance in instances]
    if len(set(ids)) != len(ids) or min(ids, default=1) < 1:
        raise ValueError(f"instance ids must be unique and ≥ 1, got {ids}")
    frames = tuple(_parse_frame(item, set(ids), (width, height)) for item in raw["frames"])
    if not frames:
        raise ValueError("no frames")
    if [frame.index for frame in frames] != list(range(len(frames))):
        raise ValueError("frame indices must be 0, 1, 2, ... in order")
    background = tuple(int(v) for v in raw["i0_background"])
    if len(background) != 3:
        raise ValueError(f"i0_background must be an RGB triple, got {raw['i0_background']}")
    known = {
        "format_version",
        "name",
        "index",
        "seed",
        "size",
        "depth_unit",
        "instances",
        "frames",
        "i0_background",
    }
    return SceneMeta(
        name=str(raw["name"]),
        index=int(raw["index"]),
        seed=int(raw["seed"]),
        size=(width, height),
        depth_unit=depth_unit,
        instances=instances,
        frames=frames,
        i0_background=background,
        extra={key: value for key, value in raw.items() if key not in known},
    )


def _parse_instance(raw: dict) -> Instance:
    kind = raw["kind"]
    if kind not in INSTANCE_KINDS:
        raise ValueError(f"instance kind {kind!r} not in {INSTANCE_KINDS}")
    return Instance(
        id=int(raw["id"]),
        name=str(raw["name"]),
        kind=kind,
        mesh=str(raw["mesh"]),
        symmetric=bool(raw["symmetric"]),
        T_world_obj=_pose(raw["T_world_obj"], f"T_world_obj of instance {raw['id']}"),
    )


def _parse_frame(raw: dict, ids: set[int], size: tuple[int, int]) -> FrameInfo:
    index = int(raw["index"])
    visible = tuple(int(v) for v in raw["visible"])
    if not set(visible) <= ids:
        raise ValueError(f"frame {index} lists unknown visible ids {sorted(set(visible) - ids)}")
    crops = []
    for item in raw["i0"]:
        box = tuple(int(v) for v in item["box"])
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]):
            raise ValueError(f"frame {index}: I0 box {box} outside the {size[0]}×{size[1]} image")
        if int(item["id"]) not in ids:
            raise ValueError(f"frame {index}: I0 of unknown instance {item['id']}")
        crops.append(I0Crop(int(item["id"]), box, str(item["file"])))
    try:
        K = check_intrinsics(np.asarray(raw["K"], dtype=np.float64))
    except ValueError as error:
        raise ValueError(f"frame {index}: {error}") from error
    return FrameInfo(
        index=index,
        K=K,
        T_world_cam=_pose(raw["T_world_cam"], f"T_world_cam of frame {index}"),
        visible=visible,
        i0=tuple(crops),
    )


def _pose(value: Any, what: str) -> np.ndarray:
    T = np.asarray(value, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError(f"{what} must be a finite 4×4 matrix")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or not np.allclose(T[3], [0, 0, 0, 1]):
        raise ValueError(f"{what} is not a rigid transform")
    return T


def read_frame(folder: str | Path, meta: SceneMeta, index: int, with_i0: bool = True) -> FrameData:
    """Load frame `index` of the scene in `folder` (whose scene.json parsed into `meta`)."""
    folder = Path(folder)
    if not 0 <= index < len(meta.frames):
        raise IndexError(f"{folder} has {len(meta.frames)} frames, asked for frame {index}")
    info = meta.frames[index]
    width, height = meta.size
    rgb_file, depth_file, labels_file = info.files
    bgr = _imread(folder, rgb_file, cv2.IMREAD_COLOR, (height, width, 3), np.uint8)
    steps = _imread(folder, depth_file, cv2.IMREAD_UNCHANGED, (height, width), np.uint16)
    labels = _imread(folder, labels_file, cv2.IMREAD_UNCHANGED, (height, width), np.uint16)
    i0 = {}
    if with_i0:
        for crop in info.i0:
            x0, y0, x1, y1 = crop.box
            bgra = _imread(folder, crop.file, cv2.IMREAD_UNCHANGED, (y1 - y0, x1 - x0, 4), np.uint8)
            i0[crop.instance_id] = (
                cv2.cvtColor(bgra[..., :3], cv2.COLOR_BGR2RGB),
                bgra[..., 3] > 127,
                crop.box,
            )
    return FrameData(
        info=info,
        rgb=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
        depth=steps.astype(np.float32) * np.float32(meta.depth_unit),
        labels=labels.astype(np.int32),
        i0=i0,
    )


def _imread(folder: Path, rel: str, flags: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    image = cv2.imread(str(folder / rel), flags)
    if image is None:
        raise SceneFormatError(folder, f"{rel} is missing or not a readable image")
    if image.shape != shape or image.dtype != dtype:
        raise SceneFormatError(
            folder,
            f"{rel} is {image.shape} {image.dtype}, expected {shape} {np.dtype(dtype)}",
        )
    return image


def list_scenes(root: str | Path) -> list[Path]:
    """Published scene folders under `root` (named scene_NNNNNN), sorted; nothing is validated."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no scene directory {root}")
    return sorted(p for p in root.iterdir() if p.is_dir() and SCENE_NAME.match(p.name))


def is_complete(folder: str | Path) -> bool:
    """True when `folder` holds a scene that `read_scene` accepts."""
    try:
        read_scene(folder)
    except SceneFormatError:
        return False
    return True
