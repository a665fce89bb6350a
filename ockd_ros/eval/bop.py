"""Reading BOP-format datasets and writing BOP results CSV files.

Format: https://github.com/thodan/bop_toolkit/blob/master/docs/bop_datasets_format.md. A dataset
folder holds `models/` (`obj_XXXXXX.ply` in millimetres, `models_info.json` with diameters and
symmetries), optionally `models_eval/` (decimated copies for metrics), and one folder per split
with scene folders `XXXXXX/` holding `rgb/`, `scene_gt.json` and `scene_camera.json`. Everything
returned here is in metres.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import trimesh

from ockd_ros.geometry import check_intrinsics
from ockd_ros.meshes import ObjectSpec

MM = 0.001
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif")
RESULTS_HEADER = ("scene_id", "im_id", "obj_id", "score", "R", "t", "time")


@dataclass(frozen=True)
class BopModel:
    """One object of a dataset: mesh files, diameter (metres) and whether it is symmetric."""

    obj_id: int
    path: Path
    eval_path: Path
    diameter: float
    symmetric: bool

    @property
    def name(self) -> str:
        return f"obj_{self.obj_id:06d}"

    def spec(self) -> ObjectSpec:
        return ObjectSpec(self.name, self.path, "mm", self.symmetric)

    def eval_points(self) -> np.ndarray:
        """N×3 metric points in metres: the vertices of the `models_eval` mesh (BOP's choice)."""
        mesh = trimesh.load(self.eval_path, force="mesh", process=False)
        return np.asarray(mesh.vertices, dtype=np.float64) * MM


@dataclass(frozen=True)
class GtInstance:
    """A ground-truth object in a frame: `T_cam_obj` as R (3×3) and t (3, metres)."""

    obj_id: int
    R: np.ndarray
    t: np.ndarray


@dataclass(frozen=True)
class BopFrame:
    scene_id: int
    im_id: int
    rgb_path: Path
    K: np.ndarray
    instances: tuple[GtInstance, ...]

    def load_rgb(self) -> np.ndarray:
        """The frame as H×W×3 uint8 RGB."""
        bgr = cv2.imread(str(self.rgb_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot read image {self.rgb_path}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class BopDataset:
    """A BOP dataset folder: `models` by object id and the frames of one split."""

    def __init__(self, root: str | Path, split: str = "test"):
        self.root = Path(root)
        self.split = split
        if not self.root.is_dir():
            raise FileNotFoundError(f"BOP dataset folder not found: {self.root}")
        self.models = _read_models(self.root)
        split_dir = self.root / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"split {split!r} not found: no folder {split_dir}")
        self.scene_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir() and p.name.isdigit())
        if not self.scene_dirs:
            raise FileNotFoundError(f"no scene folders (digits only, e.g. 000002) in {split_dir}")

    def frames(self) -> list[BopFrame]:
        """Every annotated frame of the split, by scene then image id."""
        frames = []
        for scene_dir in self.scene_dirs:
            frames.extend(_read_scene(scene_dir, set(self.models)))
        return frames


def _read_models(root: Path) -> dict[int, BopModel]:
    info = _read_json(root / "models" / "models_info.json")
    models = {}
    for key, entry in info.items():
        obj_id = int(key)
        path = root / "models" / f"obj_{obj_id:06d}.ply"
        eval_path = root / "models_eval" / path.name
        if "diameter" not in entry:
            raise ValueError(
                f"{root / 'models' / 'models_info.json'}: object {key} has no diameter"
            )
        models[obj_id] = BopModel(
            obj_id=obj_id,
            path=path,
            eval_path=eval_path if eval_path.is_file() else path,
            diameter=float(entry["diameter"]) * MM,
            symmetric=bool(entry.get("symmetries_discrete") or entry.get("symmetries_continuous")),
        )
    return models


def _read_scene(scene_dir: Path, known: set[int]) -> list[BopFrame]:
    gt = _read_json(scene_dir / "scene_gt.json")
    cameras = _read_json(scene_dir / "scene_camera.json")
    images = {
        int(p.stem): p for p in (scene_dir / "rgb").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES
    }
    frames = []
    for key in sorted(gt, key=int):
        im_id = int(key)
        if key not in cameras:
            raise ValueError(f"{scene_dir / 'scene_camera.json'} has no camera for image {key}")
        if im_id not in images:
            raise FileNotFoundError(f"{scene_dir / 'rgb'}: no image for id {im_id}")
        K = check_intrinsics(np.asarray(cameras[key]["cam_K"], dtype=np.float64).reshape(3, 3))
        instances = tuple(
            GtInstance(
                obj_id=int(entry["obj_id"]),
                R=np.asarray(entry["cam_R_m2c"], dtype=np.float64).reshape(3, 3),
                t=np.asarray(entry["cam_t_m2c"], dtype=np.float64).reshape(3) * MM,
            )
            for entry in gt[key]
            if int(entry["obj_id"]) in known
        )
        frames.append(BopFrame(int(scene_dir.name), im_id, images[im_id], K, instances))
    return frames


def _read_json(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"BOP file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


@dataclass(frozen=True)
class BopEstimate:
    """One line of a BOP results file: a pose (R 3×3, t metres) with score and frame time (s)."""

    scene_id: int
    im_id: int
    obj_id: int
    score: float
    R: np.ndarray
    t: np.ndarray
    time: float


def write_results_csv(path: str | Path, estimates: list[BopEstimate]) -> Path:
    """BOP results CSV (`scene_id,im_id,obj_id,score,R,t,time`, R row-major, t in mm)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(RESULTS_HEADER)
        for e in estimates:
            writer.writerow(
                [
                    e.scene_id,
                    e.im_id,
                    e.obj_id,
                    f"{e.score:.6f}",
                    " ".join(f"{v:.8f}" for v in np.asarray(e.R).reshape(9)),
                    " ".join(f"{v / MM:.4f}" for v in np.asarray(e.t).reshape(3)),
                    f"{e.time:.4f}",
                ]
            )
    return path


def read_results_csv(path: str | Path) -> list[BopEstimate]:
    """The estimates of a BOP results CSV (t converted to metres)."""
    with Path(path).open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    return [
        BopEstimate(
            scene_id=int(row["scene_id"]),
            im_id=int(row["im_id"]),
            obj_id=int(row["obj_id"]),
            score=float(row["score"]),
            R=np.array(row["R"].split(), dtype=np.float64).reshape(3, 3),
            t=np.array(row["t"].split(), dtype=np.float64) * MM,
            time=float(row["time"]),
        )
        for row in rows
    ]
