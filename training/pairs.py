"""Frame pairs for training: images, labels, the dense correspondence T12 and the I0 renders.

For a pixel p of frame 1 with depth, T12[p] is where its 3D point projects in frame 2; `valid[p]`
says the point is really seen there: inside the image, in front of the camera, and not occluded
(frame 2's depth at that pixel agrees with the point's depth), and with the same instance label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ockd_ros.geometry import check_intrinsics, invert_pose
from ockd_ros.training.scene_format import (
    FrameData,
    Instance,
    SceneFormatError,
    SceneMeta,
    list_scenes,
    read_frame,
    read_scene,
)

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairConfig:
    gap: int = 1  # pair frame i with frame i + gap (the paper uses adjacent frames)
    max_gap: int | None = None  # also i + gap + 1 … i + max_gap: wider baselines (None: gap only)
    depth_tolerance: float = 0.005  # metres: reprojected depth may differ this much ...
    relative_tolerance: float = 0.02  # ... or this fraction of the depth, whichever is larger
    check_labels: bool = True  # a correspondence must also land on the same instance
    with_i0: bool = True


@dataclass
class ObjectRender:
    """An object rendered alone (I0) at its pose in a frame, pasted into the full frame.

    rgb: H×W×3 uint8 (plain background outside the object). mask: H×W bool, the whole object
    silhouette, occluded parts included. box: (x0, y0, x1, y1) of the stored crop.
    """

    instance_id: int
    name: str
    rgb: np.ndarray
    mask: np.ndarray
    box: tuple[int, int, int, int]


@dataclass
class FramePair:
    """Frames a and b of one scene, as (I1, I2).

    rgb1, rgb2: H×W×3 uint8. depth1, depth2: H×W float32 metres (0 = nothing).
    labels1, labels2: H×W int32 instance ids (see `instances`). K1, K2: 3×3.
    T_world_cam1, T_world_cam2: 4×4. T12: H×W×2 float32 (x, y) position in frame 2 of each
    frame-1 pixel, NaN without depth or behind camera 2. valid: H×W bool, see the module docstring.
    i0_1, i0_2: I0 renders of the objects visible in each frame, by instance id.
    """

    scene: str
    frames: tuple[int, int]
    rgb1: np.ndarray
    rgb2: np.ndarray
    depth1: np.ndarray
    depth2: np.ndarray
    labels1: np.ndarray
    labels2: np.ndarray
    K1: np.ndarray
    K2: np.ndarray
    T_world_cam1: np.ndarray
    T_world_cam2: np.ndarray
    T12: np.ndarray
    valid: np.ndarray
    instances: tuple[Instance, ...]
    i0_1: dict[int, ObjectRender]
    i0_2: dict[int, ObjectRender]


def correspondence(
    depth1: np.ndarray,
    K1: np.ndarray,
    T_world_cam1: np.ndarray,
    depth2: np.ndarray,
    K2: np.ndarray,
    T_world_cam2: np.ndarray,
    depth_tolerance: float = 0.005,
    relative_tolerance: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense correspondence from frame 1 to frame 2 of a static scene.

    depth1 H1×W1, depth2 H2×W2: metres along the optical axis, 0 = no surface.
    Returns T12 H1×W1×2 float32 (NaN without depth or behind camera 2) and valid H1×W1 bool: the
    point lands inside frame 2, in front of it, and frame 2's depth at the nearest pixel agrees
    with the point's depth within max(depth_tolerance, relative_tolerance × depth), i.e. it is
    not occluded.
    """
    K1, K2 = check_intrinsics(K1), check_intrinsics(K2)
    height, width = depth1.shape
    v, u = np.mgrid[0:height, 0:width]
    has_depth = depth1 > 0
    z1 = depth1[has_depth].astype(np.float64)
    uv1 = np.stack([u[has_depth], v[has_depth], np.ones_like(z1)], axis=1)
    points1 = (uv1 @ np.linalg.inv(K1).T) * z1[:, None]
    T21 = invert_pose(T_world_cam2) @ T_world_cam1
    points2 = points1 @ T21[:3, :3].T + T21[:3, 3]
    z2 = points2[:, 2]
    in_front = z2 > 1e-6
    uvw = points2 @ K2.T
    uv2 = np.full((len(z2), 2), np.nan)
    uv2[in_front] = uvw[in_front, :2] / uvw[in_front, 2:3]

    T12 = np.full((height, width, 2), np.nan, np.float32)
    T12[has_depth] = uv2
    # Nearest pixel: at a depth edge interpolating would mix the occluder and the occluded.
    h2, w2 = depth2.shape
    with np.errstate(invalid="ignore"):
        nearest = np.round(uv2)
        inside = in_front & np.all((nearest >= 0) & (nearest <= [w2 - 1, h2 - 1]), axis=1)
    xi, yi = nearest[inside].astype(int).T
    seen = depth2[yi, xi].astype(np.float64)
    tolerance = np.maximum(depth_tolerance, relative_tolerance * z2[inside])
    visible = np.zeros(len(z2), bool)
    visible[inside] = (seen > 0) & (np.abs(seen - z2[inside]) <= tolerance)
    valid = np.zeros((height, width), bool)
    valid[has_depth] = visible
    return T12, valid


def label_agreement(labels1: np.ndarray, labels2: np.ndarray, T12: np.ndarray) -> np.ndarray:
    """H×W bool: the nearest frame-2 pixel of T12 has the same label (False off the image)."""
    h2, w2 = labels2.shape
    with np.errstate(invalid="ignore"):
        nearest = np.round(T12)
        inside = np.all((nearest >= 0) & (nearest <= [w2 - 1, h2 - 1]), axis=-1)
    same = np.zeros(labels1.shape, bool)
    xi, yi = nearest[inside].astype(int).T
    same[inside] = labels2[yi, xi] == labels1[inside]
    return same


def load_pair(
    folder: str | Path,
    a: int,
    b: int,
    conf: PairConfig | None = None,
    meta: SceneMeta | None = None,
) -> FramePair:
    """Frames a (I1) and b (I2) of the scene in `folder`, with T12 from a to b."""
    conf = conf or PairConfig()
    folder = Path(folder)
    meta = meta or read_scene(folder)
    f1 = read_frame(folder, meta, a, conf.with_i0)
    f2 = read_frame(folder, meta, b, conf.with_i0)
    T12, valid = correspondence(
        f1.depth,
        f1.info.K,
        f1.info.T_world_cam,
        f2.depth,
        f2.info.K,
        f2.info.T_world_cam,
        conf.depth_tolerance,
        conf.relative_tolerance,
    )
    if conf.check_labels:
        valid &= label_agreement(f1.labels, f2.labels, T12)
    return FramePair(
        scene=meta.name,
        frames=(a, b),
        rgb1=f1.rgb,
        rgb2=f2.rgb,
        depth1=f1.depth,
        depth2=f2.depth,
        labels1=f1.labels,
        labels2=f2.labels,
        K1=f1.info.K,
        K2=f2.info.K,
        T_world_cam1=f1.info.T_world_cam,
        T_world_cam2=f2.info.T_world_cam,
        T12=T12,
        valid=valid,
        instances=meta.instances,
        i0_1=object_renders(f1, meta),
        i0_2=object_renders(f2, meta),
    )


def object_renders(frame: FrameData, meta: SceneMeta) -> dict[int, ObjectRender]:
    """The frame's I0 crops pasted into full frames."""
    width, height = meta.size
    renders = {}
    for instance_id, (rgb_crop, mask_crop, box) in frame.i0.items():
        x0, y0, x1, y1 = box
        rgb = np.empty((height, width, 3), np.uint8)
        rgb[:] = meta.i0_background
        mask = np.zeros((height, width), bool)
        rgb[y0:y1, x0:x1] = rgb_crop
        mask[y0:y1, x0:x1] = mask_crop
        name = meta.instance(instance_id).name
        renders[instance_id] = ObjectRender(instance_id, name, rgb, mask, box)
    return renders


class PairDataset(Dataset):
    """All (frame i, frame i + g) pairs, gap ≤ g ≤ max_gap, of the scenes under `root`.

    Only published scene folders (scene_NNNNNN) are read. A folder that does not validate raises
    `SceneFormatError` naming it, unless `strict=False`, which logs and skips it.
    """

    def __init__(self, root: str | Path, conf: PairConfig | None = None, strict: bool = True):
        self.conf = conf or PairConfig()
        max_gap = self.conf.max_gap or self.conf.gap
        if self.conf.gap < 1 or max_gap < self.conf.gap:
            raise ValueError(f"need 1 ≤ gap ≤ max_gap, got {self.conf.gap}, {self.conf.max_gap}")
        self.scenes: list[tuple[Path, SceneMeta]] = []
        for folder in list_scenes(root):
            try:
                self.scenes.append((folder, read_scene(folder)))
            except SceneFormatError as error:
                if strict:
                    raise
                LOG.warning("skipping %s", error)
        self.pairs = [
            (s, i, i + gap)
            for s, (_, meta) in enumerate(self.scenes)
            for gap in range(self.conf.gap, max_gap + 1)
            for i in range(len(meta.frames) - gap)
        ]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> FramePair:
        s, a, b = self.pairs[index]
        folder, meta = self.scenes[s]
        return load_pair(folder, a, b, self.conf, meta)


def collate_pairs(batch: list[FramePair]) -> dict:
    """Stack same-size pairs into tensors for a DataLoader; I0 renders stay per-sample lists.

    rgb1/rgb2: B×3×H×W float in [0, 1]; labels1/labels2: B×H×W int64; T12: B×H×W×2 float
    (NaN replaced by -1, use `valid`); valid: B×H×W bool; K1/K2: B×3×3; T21: B×4×4 (frame 1 →
    frame 2 camera).
    """

    def images(key: str) -> torch.Tensor:
        stacked = np.stack([getattr(pair, key) for pair in batch])
        return torch.from_numpy(stacked).permute(0, 3, 1, 2).float() / 255.0

    def stack(key: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([getattr(pair, key) for pair in batch]))

    T21 = np.stack([invert_pose(p.T_world_cam2) @ p.T_world_cam1 for p in batch])
    return {
        "rgb1": images("rgb1"),
        "rgb2": images("rgb2"),
        "labels1": stack("labels1").long(),
        "labels2": stack("labels2").long(),
        "T12": torch.nan_to_num(stack("T12"), nan=-1.0),
        "valid": stack("valid"),
        "K1": stack("K1"),
        "K2": stack("K2"),
        "T21": torch.from_numpy(T21),
        "i0_1": [pair.i0_1 for pair in batch],
        "i0_2": [pair.i0_2 for pair in batch],
        "scene": [pair.scene for pair in batch],
        "frames": [pair.frames for pair in batch],
    }
