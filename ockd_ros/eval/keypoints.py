"""Keypoint matching evaluation (MMA@5/7 and keypoint counts) on synthetic and real pairs.

Real pairs come from a BOP dataset: for each annotated object in a frame, the reference view is
the object rendered alone at its ground-truth pose turned by `rotation_deg` about its centre;
correspondences follow from the render's depth and both poses, and a render of every annotated
object at its ground-truth pose supplies the occlusion check in the real frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from ockd_ros.eval.bop import BopDataset
from ockd_ros.eval.mma import score_matches
from ockd_ros.features.types import FeatureExtractor, Features
from ockd_ros.geometry import backproject, invert_pose, make_pose, project, transform_points
from ockd_ros.meshes import ObjectMesh, load_object
from ockd_ros.render import Renderer

THRESHOLDS = (5, 7)
MIN_VISIBLE_PIXELS = 100  # objects less visible than this in a frame make no pair


@dataclass
class MatchingPair:
    """Image 1 with, per pixel, its correspondence in image 2.

    corr12: H1×W1×2, valid12: H1×W1; region1/region2: H×W bool masks where keypoints count
    (the object, or everything); label: the object (or scene) the pair is about.
    """

    label: str
    image1: np.ndarray
    image2: np.ndarray
    corr12: np.ndarray
    valid12: np.ndarray
    region1: np.ndarray
    region2: np.ndarray


@dataclass
class BackendScore:
    """Per-pair MMA and keypoint counts of one backend, grouped by label."""

    mma: dict[int, list[float]] = field(default_factory=lambda: {t: [] for t in THRESHOLDS})
    keypoints: list[int] = field(default_factory=list)
    matches: list[int] = field(default_factory=list)  # scored matches per pair
    by_label: dict[str, list[float]] = field(default_factory=dict)  # MMA@5 per label

    def add(self, label: str, features1: Features, features2: Features, pair, matcher=None) -> None:
        score = score_matches(features1, features2, pair.corr12, pair.valid12, THRESHOLDS, matcher)
        for threshold in THRESHOLDS:
            self.mma[threshold].append(score.mma(threshold))
        self.keypoints.append(len(features2))
        self.matches.append(score.matches)
        self.by_label.setdefault(label, []).append(score.mma(5))

    def mean_mma(self, threshold: int) -> float:
        return float(np.mean(self.mma[threshold])) if self.mma[threshold] else 0.0


def in_region(features: Features, region: np.ndarray) -> Features:
    """The features whose keypoint falls inside the H×W bool `region`."""
    points = np.round(features.keypoints).astype(int)
    return features.select(region[points[:, 1], points[:, 0]])


def score_pairs(
    extractor: FeatureExtractor,
    pairs: Iterator[MatchingPair],
    cache_second: bool = True,
    matcher: Callable[[Features, Features], np.ndarray] | None = None,
) -> BackendScore:
    """Extract both images of every pair (the second image once while it repeats) and score;
    `matcher` as in `score_matches`."""
    result = BackendScore()
    last_image2, features2_all = None, None
    for pair in pairs:
        features1 = in_region(extractor.extract(pair.image1), pair.region1)
        if not (cache_second and pair.image2 is last_image2):
            features2_all, last_image2 = extractor.extract(pair.image2), pair.image2
        features2 = in_region(features2_all, pair.region2)
        result.add(pair.label, features1, features2, pair, matcher)
    return result


def bop_reference_pairs(
    dataset: BopDataset,
    renderer: Renderer,
    rotation_deg: float = 15.0,
    seed: int = 0,
    depth_tolerance: float = 0.01,
) -> Iterator[MatchingPair]:
    """Rendered reference view (image 1) → real frame (image 2) pairs, one per annotated object.

    Visibility in the real frame comes from a render of every annotated object at its
    ground-truth pose (real frames have no instance labels of their own).
    """
    rng = np.random.default_rng(seed)
    objects = {obj_id: load_object(model.spec()) for obj_id, model in dataset.models.items()}
    for frame in dataset.frames():
        rgb = frame.load_rgb()
        size = (rgb.shape[1], rgb.shape[0])
        gt_poses = [make_pose(inst.R, inst.t) for inst in frame.instances]
        gt_objects = [objects[inst.obj_id] for inst in frame.instances]
        scene = renderer.render(gt_objects, gt_poses, frame.K, size)
        for index, (obj, T_gt) in enumerate(zip(gt_objects, gt_poses, strict=True)):
            visible = scene.mask(index)
            if visible.sum() >= MIN_VISIBLE_PIXELS:
                turn = random_turn(rng, rotation_deg)
                yield reference_pair(
                    renderer, obj, T_gt, rgb, frame.K, visible, scene.depth, turn, depth_tolerance
                )


def reference_pair(
    renderer: Renderer,
    obj: ObjectMesh,
    T_gt: np.ndarray,
    frame_rgb: np.ndarray,
    K: np.ndarray,
    visible: np.ndarray,
    scene_depth: np.ndarray,
    turn: np.ndarray,
    depth_tolerance: float = 0.01,
) -> MatchingPair:
    """The object rendered alone at T_gt turned by `turn` (3×3, about its centre) → the frame.

    visible: H×W bool, the object's unoccluded pixels in the frame; scene_depth: H×W metres, for
    the occlusion check.
    """
    size = (frame_rgb.shape[1], frame_rgb.shape[0])
    T_ref = make_pose(turn @ T_gt[:3, :3], T_gt[:3, 3])
    reference = renderer.render([obj], [T_ref], K, size)
    corr, valid = _reference_correspondence(
        reference.depth, K, T_ref, T_gt, scene_depth, visible, depth_tolerance
    )
    region2 = cv2.dilate(visible.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    return MatchingPair(obj.name, reference.rgb, frame_rgb, corr, valid, reference.mask(0), region2)


def random_turn(rng: np.random.Generator, degrees: float) -> np.ndarray:
    """A 3×3 rotation by `degrees` about a uniformly random axis."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return Rotation.from_rotvec(axis * np.radians(degrees)).as_matrix()


def _reference_correspondence(depth_ref, K, T_ref, T_gt, scene_depth, visible, tolerance):
    height, width = depth_ref.shape
    ys, xs = np.nonzero(depth_ref > 0)
    points_ref = backproject(K, np.column_stack([xs, ys]).astype(float), depth_ref[ys, xs])
    points_frame = transform_points(T_gt @ invert_pose(T_ref), points_ref)
    uv = project(K, points_frame)
    corr = np.full((height, width, 2), -1.0, np.float32)
    corr[ys, xs] = uv
    nearest = np.round(uv).astype(int)
    inside = np.all((nearest >= 0) & (nearest < [width, height]), axis=1)
    seen = np.zeros(len(uv), bool)
    qx, qy = nearest[inside, 0], nearest[inside, 1]
    agrees = np.abs(scene_depth[qy, qx] - points_frame[inside, 2]) <= tolerance
    seen[inside] = visible[qy, qx] & agrees
    valid = np.zeros((height, width), bool)
    valid[ys, xs] = seen
    return corr, valid
