"""Template banks: an object rendered from many viewpoints, with keypoints lifted to 3D.

Viewpoint sampling (see `template_poses`): `views` camera directions on a Fibonacci lattice over
the whole sphere around the object (or the hemisphere around its `up` axis, +z by default, for
objects that stand on their base), each looking at the centre of the object's bounding box with
`up` upwards in the image, from the distance at which the bounding sphere spans `fill` of the
template side. Each viewpoint is seen with `inplane` rotations about the optical axis
(360°/inplane apart): 1 for rotation-invariant descriptors such as SIFT, more for descriptors that
are not. A bank holds `views × inplane` templates. Each viewpoint is rendered once, the turned
templates are its image turned (`render_templates`), and features are extracted in batches.

A bank is built once per object, backend and settings and cached as an NPZ file whose name holds
a hash of everything that changes its content (see `bank_key`); a changed mesh, network or
setting gives a new key and a rebuild, and an unreadable cache file is rebuilt with a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from ockd_ros.features.types import FeatureExtractor, Features
from ockd_ros.geometry import backproject, invert_pose, look_at, make_pose, transform_points
from ockd_ros.meshes import ObjectMesh
from ockd_ros.progress import progress_bar
from ockd_ros.render import RenderedView, Renderer
from ockd_ros.samples import default_camera

LOG = logging.getLogger(__name__)
BANK_FORMAT_VERSION = 4  # 2: colours; 3: vertex colours rendered as sRGB; 4: scales
GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))
# Smallest template scale: below it an object's template shrinks to a few grid cells.
MIN_TEMPLATE_SCALE = 0.1
# Templates per forward pass. Larger batches gain little on a CPU and cost memory: an engine model
# compiled for 16 templates of 256² holds ~0.5 GB, for 4 ~40 MB.
EXTRACT_BATCH = 4


@dataclass(frozen=True)
class TemplateConfig:
    views: int = 96  # camera directions around the object
    inplane: int = 1  # rotations about the optical axis per direction
    hemisphere: bool = False  # only directions from above (`up` · direction ≥ 0)
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)  # object axis shown upwards in templates
    size: int = 256  # template side in pixels (square)
    fill: float = 0.8  # fraction of the side spanned by the object's bounding sphere
    # Sizes of the object in the templates, relative to `fill`: every view is also kept at each
    # smaller scale (its render shrunk), for objects that look that much smaller in the frames
    # (farther away, or small themselves) than the learned descriptors tolerate.
    scales: tuple[float, ...] = (1.0,)
    max_keypoints: int = 256  # strongest keypoints kept per template
    edge_margin: int = 2  # pixels: keypoints this close to the silhouette are dropped
    background: tuple[int, int, int] = (0, 0, 0)

    def validate(self) -> None:
        if self.views < 1 or self.inplane < 1:
            raise ValueError(f"views and inplane must be ≥ 1, got {self.views}, {self.inplane}")
        if self.size < 32:
            raise ValueError(f"template size must be ≥ 32 pixels, got {self.size}")
        if not 0.0 < self.fill <= 1.0:
            raise ValueError(f"fill must be in (0, 1], got {self.fill}")
        if not self.scales or not all(MIN_TEMPLATE_SCALE <= s <= 1.0 for s in self.scales):
            raise ValueError(
                f"scales must be in [{MIN_TEMPLATE_SCALE}, 1] (at least one), got {self.scales}"
            )
        if not np.all(np.isfinite(self.up)) or np.linalg.norm(self.up) == 0:
            raise ValueError(f"up must be a finite non-zero vector, got {self.up}")
        if self.max_keypoints < 1 or self.edge_margin < 0:
            raise ValueError("max_keypoints must be ≥ 1 and edge_margin ≥ 0")


@dataclass
class TemplateBank:
    """All templates of one object for one feature backend, keypoints flattened over templates.

    keypoints: M×2 float32 pixels of the template at its scale. descriptors: M×D float32 unit
    rows (intra-object), or float16 (`with_precision`).
    points: M×3 float32, each keypoint's 3D point in the object frame (metres).
    colors: M×3 uint8 RGB of the template at each keypoint.
    template_ids: M int32, the template of each row, ascending.
    poses: V×4×4 float64 `T_cam_obj` of each template. K: 3×3 intrinsics of a template at scale 1.
    scales: V float64, each template's scale: its image is K's shrunk by this (same pose).
    inter_mean: D2 float32 unit mean inter-object descriptor, None for backends without one.
    """

    name: str
    backend: str
    keypoints: np.ndarray
    descriptors: np.ndarray
    points: np.ndarray
    colors: np.ndarray
    template_ids: np.ndarray
    poses: np.ndarray
    K: np.ndarray
    size: tuple[int, int]
    inter_mean: np.ndarray | None
    key: str
    build_seconds: float
    scales: np.ndarray

    @property
    def num_templates(self) -> int:
        return len(self.poses)

    def view_angles(self, R: np.ndarray, t: np.ndarray) -> np.ndarray:
        """V float64 degrees between each template's view and that of an object at (R, t).

        Templates show the object centred on the optical axis, so the pose is first turned
        (about the camera centre) to centre the object, then compared by rotation angle.
        """
        centring = Rotation.align_vectors([[0.0, 0.0, 1.0]], [t / np.linalg.norm(t)])[0]
        centred = centring.as_matrix() @ R
        cosine = (np.einsum("vij,ij->v", self.poses[:, :3, :3], centred) - 1.0) / 2.0
        return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))

    def spread(self, count: int, share: float) -> TemplateBank:
        """The bank with the rows of each template reordered: first `count` rows picked
        farthest-point among its strongest `share` of rows (starting from the strongest), then
        the others, strongest first. `count` 0: the bank as it is."""
        if count == 0 or len(self.template_ids) == 0:
            return self
        sizes = np.bincount(self.template_ids, minlength=self.num_templates)
        within = np.arange(len(self.template_ids)) - (np.cumsum(sizes) - sizes)[self.template_ids]
        pools = np.maximum(np.floor(share * sizes), 1).astype(np.int64)
        picked = spread_picks(self.keypoints, self.template_ids, within, count, pools)
        rank = np.where(picked >= 0, picked, count + within)
        return self._rows(np.lexsort((rank, self.template_ids)))

    def with_precision(self, dtype: type[np.floating]) -> TemplateBank:
        """The bank with its descriptors held in `dtype` (float16 halves their memory)."""
        if self.descriptors.dtype == dtype:
            return self
        return dataclasses.replace(self, descriptors=self.descriptors.astype(dtype))

    def subset(self, templates: Sequence[int]) -> TemplateBank:
        """A bank with only the given templates, renumbered 0..len-1 (for benchmarks)."""
        templates = np.asarray(templates, dtype=np.int64)
        renumber = np.full(self.num_templates, -1, np.int32)
        renumber[templates] = np.arange(len(templates), dtype=np.int32)
        rows = np.flatnonzero(renumber[self.template_ids] >= 0)
        rows = rows[np.argsort(renumber[self.template_ids[rows]], kind="stable")]
        subset = self._rows(rows)
        return dataclasses.replace(
            subset,
            template_ids=renumber[subset.template_ids],
            poses=self.poses[templates],
            scales=self.scales[templates],
        )

    def _rows(self, rows: np.ndarray) -> TemplateBank:
        """The bank with its per-row arrays taken at `rows`, in that order."""
        return dataclasses.replace(
            self,
            keypoints=self.keypoints[rows],
            descriptors=self.descriptors[rows],
            points=self.points[rows],
            colors=self.colors[rows],
            template_ids=self.template_ids[rows],
        )


def spread_picks(
    keypoints: np.ndarray,
    template_ids: np.ndarray,
    within: np.ndarray,
    count: int,
    pools: np.ndarray,
) -> np.ndarray:
    """M int64: for each of M rows (M×2 `keypoints`, ascending `template_ids`, `within`: the
    row's place in its template), its place among the `count` rows of its template picked
    farthest-point among the template's first `pools[template]` rows, −1 for rows not picked.
    All templates at once, their pools padded to the largest."""
    num_templates, width = len(pools), int(pools.max(initial=1))
    in_pool = np.flatnonzero(within < pools[template_ids])
    xy = np.full((num_templates, width, 2), np.nan)
    xy[template_ids[in_pool], within[in_pool]] = keypoints[in_pool]
    valid = ~np.isnan(xy[..., 0])
    order = np.full((num_templates, width), -1, np.int64)
    nearest = np.where(valid, np.inf, -np.inf)  # distance to the nearest pick; −inf: no row
    pick = np.zeros(num_templates, np.int64)  # the strongest row first
    templates = np.arange(num_templates)
    for step in range(min(count, width)):
        able = valid[templates, pick] & (order[templates, pick] < 0)
        order[templates[able], pick[able]] = step
        distance = np.linalg.norm(xy - xy[templates, pick][:, None, :], axis=2)
        nearest = np.minimum(nearest, np.where(valid, distance, -np.inf))
        nearest[order >= 0] = -np.inf
        pick = np.argmax(nearest, axis=1)
    picked = np.full(len(template_ids), -1, np.int64)
    picked[in_pool] = order[template_ids[in_pool], within[in_pool]]
    return picked


def sample_viewpoints(count: int, hemisphere: bool = False) -> np.ndarray:
    """`count`×3 unit vectors spread evenly over the sphere (or the z ≥ 0 half) on a Fibonacci
    lattice: equal-area bands in z, golden-angle steps in azimuth."""
    if count < 1:
        raise ValueError(f"need at least one viewpoint, got {count}")
    i = np.arange(count) + 0.5
    z = 1.0 - i / count if hemisphere else 1.0 - 2.0 * i / count
    ring = np.sqrt(np.clip(1.0 - z**2, 0.0, None))
    azimuth = GOLDEN_ANGLE * np.arange(count)
    return np.stack([ring * np.cos(azimuth), ring * np.sin(azimuth), z], axis=1)


def template_distance(radius: float, focal: float, size: int, fill: float) -> float:
    """Distance at which a sphere of `radius` centred on the axis spans `fill` of `size` pixels."""
    half_angle = np.arctan(fill * size / (2.0 * focal))
    return float(radius / np.sin(half_angle))


def template_poses(obj: ObjectMesh, conf: TemplateConfig, K: np.ndarray) -> np.ndarray:
    """V×4×4 poses `T_cam_obj` of the templates, in viewpoint-major, in-plane-minor order."""
    centre = obj.mesh.bounds.mean(axis=0)
    radius = float(np.linalg.norm(obj.mesh.vertices - centre, axis=1).max())
    distance = template_distance(radius, float(K[0, 0]), conf.size, conf.fill)
    up = np.asarray(conf.up, dtype=np.float64) / np.linalg.norm(conf.up)
    # A rotation taking z to `up`: the lattice's pole and hemisphere follow the object's up axis.
    z_to_up = look_at(np.zeros(3), up)[:3, :3]
    poses = []
    for direction in sample_viewpoints(conf.views, conf.hemisphere) @ z_to_up.T:
        T_obj_cam = look_at(centre + distance * direction, centre, up=up)
        for k in range(conf.inplane):
            angle = 2.0 * np.pi * k / conf.inplane
            spin = make_pose(cv2.Rodrigues(np.array([0.0, 0.0, angle]))[0], np.zeros(3))
            poses.append(invert_pose(T_obj_cam @ spin))
    return np.stack(poses)


def build_bank(
    obj: ObjectMesh,
    extractor: FeatureExtractor,
    renderer: Renderer,
    conf: TemplateConfig,
    key: str = "",
    progress: bool = False,
) -> TemplateBank:
    """Render every template of `obj`, extract features and lift on-object keypoints to 3D.

    Templates are numbered scale-major: all views at `conf.scales[0]`, then all at the next."""
    conf.validate()
    size = (conf.size, conf.size)
    K = default_camera(size)
    poses = template_poses(obj, conf, K)
    start = time.perf_counter()
    parts: list[list[tuple]] = [[] for _ in conf.scales]
    views = render_templates(obj, renderer, poses, K, conf)
    for first in progress_bar(
        range(0, len(poses), EXTRACT_BATCH),
        desc=f"{obj.name} templates",
        unit="batch",
        enabled=progress,
        leave=False,
    ):
        batch = [next(views) for _ in range(min(EXTRACT_BATCH, len(poses) - first))]
        for scale_index, scale in enumerate(conf.scales):
            shrunk = [shrink_view(view, scale) for view in batch]
            K_scaled = scaled_camera(K, shrunk[0].depth.shape[::-1], size)
            masks = [keypoint_mask(view.labels == 1, conf) for view in shrunk]
            for index, view, mask, features in zip(
                range(first, first + len(batch)),
                shrunk,
                masks,
                extract_all(extractor, [view.rgb for view in shrunk], masks),
                strict=True,
            ):
                template = scale_index * len(poses) + index
                parts[scale_index].append(
                    _lifted(features, view, mask, poses[index], K_scaled, template, conf)
                )
    parts_flat = [part for scale_parts in parts for part in scale_parts]
    inter = [f.desc_inter.sum(0) for f, *_ in parts_flat if f.desc_inter is not None and len(f)]
    return TemplateBank(
        name=obj.name,
        backend=extractor.name,
        keypoints=np.concatenate([f.keypoints for f, *_ in parts_flat]).astype(np.float32),
        descriptors=np.concatenate([f.desc_intra for f, *_ in parts_flat]).astype(np.float32),
        points=np.concatenate([p for _, p, _, _ in parts_flat]).astype(np.float32),
        colors=np.concatenate([c for _, _, c, _ in parts_flat]).astype(np.uint8),
        template_ids=np.concatenate([ids for *_, ids in parts_flat]),
        poses=np.tile(poses, (len(conf.scales), 1, 1)),
        K=K,
        size=size,
        inter_mean=_unit(np.sum(inter, axis=0) if inter else None),
        key=key,
        build_seconds=time.perf_counter() - start,
        scales=np.repeat(np.asarray(conf.scales, np.float64), len(poses)),
    )


def _lifted(
    features: Features,
    view: RenderedView,
    mask: np.ndarray,
    pose: np.ndarray,
    K: np.ndarray,
    template: int,
    conf: TemplateConfig,
) -> tuple[Features, np.ndarray, np.ndarray, np.ndarray]:
    """A template's features inside `mask` (`keypoint_mask`), their 3D points (object frame),
    colours and ids."""
    features = _on_object(features, mask, conf)
    uv = features.keypoints.astype(np.float64)
    rows, columns = np.round(uv[:, 1]).astype(int), np.round(uv[:, 0]).astype(int)
    points = transform_points(invert_pose(pose), backproject(K, uv, view.depth[rows, columns]))
    ids = np.full(len(features), template, np.int32)
    return features, points, view.rgb[rows, columns], ids


def shrink_view(view: RenderedView, scale: float) -> RenderedView:
    """`view` resized by `scale` (1: itself): what a camera at the same pose with the focal
    length and principal point scaled alike sees (`scaled_camera`). Colour is averaged; depth
    and labels take the nearest pixel (a blend across a silhouette would invent depths)."""
    if scale == 1.0:
        return view
    height, width = view.depth.shape
    size = (max(round(width * scale), 1), max(round(height * scale), 1))
    return RenderedView(
        cv2.resize(view.rgb, size, interpolation=cv2.INTER_AREA),
        cv2.resize(view.depth, size, interpolation=cv2.INTER_NEAREST),
        # int32 labels go through float32 (cv2 resizes no int32), exact below 2**24.
        cv2.resize(view.labels.astype(np.float32), size, interpolation=cv2.INTER_NEAREST).astype(
            np.int32
        ),
    )


def scaled_camera(K: np.ndarray, size: tuple[int, int], original: tuple[int, int]) -> np.ndarray:
    """The intrinsics of an image of `size` (width, height) resized from one of `original` size
    taken with K: pixel centres map as x' = (x + ½)·w'/w − ½."""
    sx, sy = size[0] / original[0], size[1] / original[1]
    scaled = np.asarray(K, np.float64).copy()
    scaled[0] *= sx
    scaled[1] *= sy
    scaled[0, 2] += 0.5 * sx - 0.5
    scaled[1, 2] += 0.5 * sy - 0.5
    return scaled


def render_templates(
    obj: ObjectMesh, renderer: Renderer, poses: np.ndarray, K: np.ndarray, conf: TemplateConfig
) -> Iterator[RenderedView]:
    """The templates at `poses` (viewpoint-major, `conf.inplane` turns each, as `template_poses`
    gives them), in order. Each viewpoint is rendered once and its image turned for the other
    in-plane turns: the same camera turned about its optical axis sees the same image turned
    about the principal point, with the same depths and the same head light."""
    size = (conf.size, conf.size)
    for view_start in range(0, len(poses), conf.inplane):
        upright = renderer.render([obj], [poses[view_start]], K, size, background=conf.background)
        yield upright
        for turn in range(1, conf.inplane):
            yield turn_view(upright, 360.0 * turn / conf.inplane, K, conf.background)


def turn_view(
    view: RenderedView, degrees: float, K: np.ndarray, background: tuple[int, int, int]
) -> RenderedView:
    """`view` as the same camera turned by `degrees` about its optical axis (+z) sees it.

    A point at pixel offset d from the principal point c moves to R(−θ)·d, so each output pixel
    u takes the input at c + R(θ)·(u − c). Colour is interpolated bilinearly; depth and labels
    take the nearest pixel (a blend across a silhouette would invent depths). Needs square
    pixels (fx = fy), as every template camera has.
    """
    if not np.isclose(K[0, 0], K[1, 1]):
        raise ValueError(f"turning a view needs square pixels, got fx {K[0, 0]}, fy {K[1, 1]}")
    theta = np.radians(degrees)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = K[:2, 2]
    output_to_input = np.hstack([rotation, (centre - rotation @ centre)[:, None]])
    height, width = view.depth.shape

    def turned(image: np.ndarray, interpolation: int, fill) -> np.ndarray:
        return cv2.warpAffine(
            image,
            output_to_input,
            (width, height),
            flags=interpolation | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=fill,
        )

    return RenderedView(
        turned(view.rgb, cv2.INTER_LINEAR, tuple(int(v) for v in background)),
        turned(view.depth, cv2.INTER_NEAREST, 0),
        # int32 labels go through float32 (cv2 warps no int32), exact below 2**24.
        turned(view.labels.astype(np.float32), cv2.INTER_NEAREST, 0).astype(np.int32),
    )


def extract_all(
    extractor: FeatureExtractor, images: list[np.ndarray], masks: list[np.ndarray] | None = None
) -> list[Features]:
    """Features of same-size images, in one forward pass where the backend batches; a batching
    backend keeps only the keypoints inside `masks` (one H×W bool per image), the others all."""
    extract_batch = getattr(extractor, "extract_batch", None)
    if extract_batch is not None:
        return extract_batch(images, masks)
    return [extractor.extract(image) for image in images]


def keypoint_mask(silhouette: np.ndarray, conf: TemplateConfig) -> np.ndarray:
    """H×W bool: where a template keeps keypoints, its silhouette `edge_margin` px in.

    Depth at the silhouette mixes object and background, and descriptors there see the template
    background, which a real image never shows: such keypoints only add wrong 3D points.
    """
    if conf.edge_margin == 0:
        return silhouette
    kernel = np.ones((2 * conf.edge_margin + 1,) * 2, np.uint8)
    return cv2.erode(silhouette.astype(np.uint8), kernel).astype(bool)


def _on_object(features: Features, mask: np.ndarray, conf: TemplateConfig) -> Features:
    """The strongest `max_keypoints` features inside `mask` (`keypoint_mask`)."""
    inside = features.in_region(mask)
    # Features are sorted by score, strongest first: the first rows inside are the ones to keep.
    return features.select(np.flatnonzero(inside)[: conf.max_keypoints])


def _unit(vector: np.ndarray | None) -> np.ndarray | None:
    if vector is None:
        return None
    norm = np.linalg.norm(vector)
    return (vector / norm).astype(np.float32) if norm > 0 else None


# ---------------------------------------------------------------------------------------------
# Cache


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/ockd_ros/templates`, by default `~/.cache/ockd_ros/templates`."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "ockd_ros" / "templates"


def backend_fingerprint(extractor: FeatureExtractor) -> dict[str, Any]:
    """What of a feature backend changes its output: name, settings and network weights.

    The weights are hashed from the loaded network rather than from the checkpoint file, so a
    network passed in directly (or randomly initialised) gets its own key too; a checkpoint that
    only changes provenance keeps its banks.
    """
    conf = dataclasses.asdict(extractor.conf) if dataclasses.is_dataclass(extractor.conf) else {}
    # Where the network runs (device, inference engine: outputs agree within 1e-3, checked at
    # load) and where its file lives do not change the features it computes, and the
    # object-mask threshold only applies to frames.
    for unused in ("device", "runtime", "checkpoint", "mask_threshold"):
        conf.pop(unused, None)
    model = getattr(extractor, "model", None)
    dtype = getattr(extractor, "dtype", None)  # what 'auto' precision resolved to here
    return {
        "backend": extractor.name,
        "conf": conf,
        "weights_sha1": _weights_hash(model),
        "dtype": None if dtype is None else str(dtype),
    }


def _weights_hash(model) -> str | None:
    if model is None:
        return None
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def bank_key(obj: ObjectMesh, fingerprint: dict[str, Any], conf: TemplateConfig) -> dict[str, Any]:
    """Everything a bank depends on: the mesh file and the material and texture files it was
    loaded with (whatever its format), its geometry in metres and texture size as loaded (textures
    are downscaled at load), the backend and the settings."""
    geometry = hashlib.sha1(np.ascontiguousarray(obj.mesh.vertices, np.float64).tobytes())
    geometry.update(np.ascontiguousarray(obj.mesh.faces, np.int64).tobytes())
    return {
        "format": BANK_FORMAT_VERSION,
        "object": obj.name,
        "mesh_sha1": obj.content_hash,
        "geometry_sha1": geometry.hexdigest(),
        "texture_size": obj.texture_size,
        **fingerprint,
        "templates": dataclasses.asdict(conf),
    }


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()


def cache_path(cache_dir: Path, name: str, backend: str, digest: str) -> Path:
    """`<cache_dir>/<object>/<backend>-<first 16 hex digits of the key hash>.npz`."""
    return Path(cache_dir) / name / f"{backend}-{digest[:16]}.npz"


def load_or_build_bank(
    obj: ObjectMesh,
    extractor: FeatureExtractor,
    conf: TemplateConfig,
    cache_dir: Path | None,
    renderer_factory,
    progress: bool = False,
) -> tuple[TemplateBank, bool]:
    """The cached bank of `obj` if a valid one exists, else a fresh build written to the cache.

    renderer_factory: a callable returning the `Renderer` to build with (called only on a miss).
    cache_dir None disables the cache. Returns the bank and whether it was built now.
    """
    key = bank_key(obj, backend_fingerprint(extractor), conf)
    digest = key_digest(key)
    path = None if cache_dir is None else cache_path(cache_dir, obj.name, extractor.name, digest)
    if path is not None and path.is_file():
        bank = read_bank(path, digest)
        if bank is not None:
            return bank, False
    bank = build_bank(obj, extractor, renderer_factory(), conf, digest, progress)
    if path is not None:
        write_bank(path, bank, key)
    return bank, True


def write_bank(path: Path, bank: TemplateBank, key: dict[str, Any]) -> Path:
    """Write the bank atomically: a crash never leaves a half-written cache file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "keypoints": bank.keypoints,
        "descriptors": bank.descriptors,
        "points": bank.points,
        "colors": bank.colors,
        "template_ids": bank.template_ids,
        "poses": bank.poses,
        "K": bank.K,
        "scales": bank.scales,
        "size": np.asarray(bank.size),
        "build_seconds": np.asarray(bank.build_seconds),
        "key_json": np.asarray(json.dumps(key, sort_keys=True)),
        "meta_json": np.asarray(json.dumps({"name": bank.name, "backend": bank.backend})),
    }
    if bank.inter_mean is not None:
        arrays["inter_mean"] = bank.inter_mean
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    os.close(handle)
    try:
        np.savez(tmp_name, **arrays)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def read_bank(path: Path, digest: str) -> TemplateBank | None:
    """The bank in `path`, or None (with a warning) if it is unreadable or not for `digest`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if key_digest(json.loads(str(data["key_json"]))) != digest:
                raise ValueError("its key does not match its name")
            meta = json.loads(str(data["meta_json"]))
            bank = TemplateBank(
                name=meta["name"],
                backend=meta["backend"],
                keypoints=data["keypoints"],
                descriptors=data["descriptors"],
                points=data["points"],
                colors=data["colors"],
                template_ids=data["template_ids"],
                poses=data["poses"],
                K=data["K"],
                size=tuple(int(v) for v in data["size"]),
                inter_mean=data["inter_mean"] if "inter_mean" in data.files else None,
                key=digest,
                build_seconds=float(data["build_seconds"]),
                scales=data["scales"],
            )
        _check_bank(bank)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        LOG.warning("template cache %s is unusable (%s): rebuilding it", path, error)
        return None
    return bank


def _check_bank(bank: TemplateBank) -> None:
    m = len(bank.template_ids)
    shapes_ok = (
        bank.keypoints.shape == (m, 2)
        and bank.points.shape == (m, 3)
        and bank.colors.shape == (m, 3)
        and bank.descriptors.ndim == 2
        and len(bank.descriptors) == m
        and bank.poses.ndim == 3
        and bank.poses.shape[1:] == (4, 4)
        and bank.scales.shape == bank.poses.shape[:1]
    )
    if not shapes_ok:
        raise ValueError("array shapes are inconsistent")
    if m and (bank.template_ids.min() < 0 or bank.template_ids.max() >= len(bank.poses)):
        raise ValueError("template ids out of range")
    if not all(np.all(np.isfinite(a)) for a in (bank.points, bank.descriptors, bank.poses)):
        raise ValueError("non-finite values")
