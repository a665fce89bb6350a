"""6D pose of known objects from one RGB image: features once per frame, then per object a
selection of its keypoints, batched mutual-NN against all its templates, and PnP + RANSAC.

Pure Python core: no ROS import. The ROS node, the evaluators and the benchmarks call
`Estimator.estimate` alike.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import trimesh

from ockd_ros.features import create_extractor
from ockd_ros.features.types import FeatureExtractor, Features, check_image
from ockd_ros.geometry import check_intrinsics, make_pose, same_pose
from ockd_ros.meshes import ObjectMesh
from ockd_ros.pose.flips import FlipConfig, GreyFrame, best_turn, box_turns, turned_pose
from ockd_ros.pose.matching import (
    BANK_PRECISIONS,
    BankDescriptors,
    MatchingConfig,
    TemplateMatches,
    match_templates,
    select_object,
)
from ockd_ros.pose.pnp import PnPConfig, PnPResult, check_distortion, refine_pose, solve_pnp
from ockd_ros.pose.templates import (
    TemplateBank,
    TemplateConfig,
    default_cache_dir,
    load_or_build_bank,
)
from ockd_ros.pose.verify import (
    Agreement,
    FrameLookup,
    Occluders,
    VerifyConfig,
    agreement,
    refine,
    strongest,
    verified,
)
from ockd_ros.render import Renderer

LOG = logging.getLogger(__name__)
# Outcome of one object in one frame, in `Estimator.last_status`.
FOUND = "found"
FEW_KEYPOINTS = "too few keypoints on the object"
NO_POSE = "no pose with enough inliers"
# Resizing an image before extraction: beyond these the network sees mostly blur or too little.
MIN_SCALE, MAX_SCALE = 0.25, 4.0


@dataclass(frozen=True)
class EstimatorConfig:
    backend: str = "ockd"  # feature backend: 'ockd', 'sift' or 'xfeat'
    features: dict[str, Any] = field(default_factory=dict)  # backend config overrides
    templates: TemplateConfig = field(default_factory=TemplateConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    pnp: PnPConfig = field(default_factory=PnPConfig)
    flips: FlipConfig = field(default_factory=FlipConfig)  # look-alike faces (pose.flips)
    # Hypotheses judged by dense descriptor agreement and refined (pose.verify) instead of
    # accepted by PnP's inlier counts alone.
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    # Images are resized by this before extraction (keypoints come back in image pixels): above 1
    # when objects look smaller in the images than in the templates.
    frame_scale: float = 1.0
    cache_dir: str | None = None  # None: default_cache_dir(); '' disables the cache
    # Worker threads: the next object's matching runs while the current object is posed, and
    # the PnP of an object's hypotheses side by side. The same poses; the cores that PnP and the
    # verifier leave idle do the matching.
    parallel: bool = True

    def validate(self) -> None:
        self.templates.validate()
        self.matching.validate()
        self.pnp.validate()
        self.flips.validate()
        self.verify.validate()
        check_scale(self.frame_scale)


def default_config(backend: str) -> EstimatorConfig:
    """The settings each feature backend works best with; override fields with
    `dataclasses.replace` or a YAML file (`ockd_ros.config.merge_config`).

    sift: sparse rotation-invariant keypoints, one upright template per view, mutual nearest
    neighbours with Lowe's ratio test, in float32: the baseline as template pipelines run it.
    ockd: descriptors on a 4-px grid (the detector fires on too few pixels of an object for PnP),
    256-px templates so the grid covers them densely, 4 in-plane turns per view (the descriptors
    tolerate about ±30° of roll), each view also shrunk to 0.55 (the descriptors tolerate about
    ±30 % of scale; on YCB-Video the tuna can shows at 0.56 of its templates' size, and was never
    found with one scale), each scale shortlisted on its own, one-way matching with a spatial ratio
    test, a PnP pose from each of the 4 templates of each scale with most matches, judged by the
    share of its template's points that agree with the frame's descriptors wherever they project
    (the largest share picks the pose, its alike hypothesis with most agreeing points stands for
    it), accepted when at least 24 agree and make up 25 % of those seen (if need be, of those
    that no object found nearer hides), then refined on every point of the templates near its view
    at the scale the object shows at (`pose.verify`; a count
    of inliers cannot tell the right pose from chance on objects with few distinctive points: on
    YCB-Video it refused right poses of the mustard bottle and tuna can, and relaxed, accepted
    wrong ones on LM-O). Dense matching against all 2 × 384 templates is too slow, so two votes of
    template keypoints against every 4th frame keypoint pick the templates to match (16 rows of
    every template keep 32 templates of each scale, 64 rows of those keep 4 of each; a template's
    first 32 rows are spread over its view, farthest-point among its strongest quarter: its
    strongest alone lie on its most textured part, which may be hidden); with bfloat16
    products where the CPU has them this is 5x faster than one vote for 8 templates in float32.
    A pose turned onto a look-alike face is put right by colour (`flips`). Every frame keypoint is a
    candidate (mask_threshold −1): the shipped model's inter-object descriptors do not yet separate
    objects from their background.
    xfeat: the SIFT pipeline with three changes, each measured on rendered default objects
    (bench/rendered_pose.py's 20 instances, seeds 0 and 1): 4 in-plane turns per view, as
    XFeat is not rotation-invariant (4 of 20 objects within 1 cm/5° instead of 1; 8 turns: 3);
    templates on mid-grey rather than black, which XFeat's image-wide normalisation and wide
    receptive field carry into the descriptors on the object (twice the correct matches at the
    template nearest the truth); mutual nearest neighbours without the ratio test, which among
    ~4000 frame keypoints left 0-3 matches per template (ratio 0.9: 3 of 20 within 1 cm/5°).
    bfloat16 products where native: 2.4x faster here, and 6 of 20 within 1 cm/5°.
    """
    if backend == "sift":
        return EstimatorConfig(backend="sift", matching=MatchingConfig(precision="float32"))
    if backend == "ockd":
        return EstimatorConfig(
            backend="ockd",
            features={"grid_stride": 4, "mask_threshold": -1.0},
            templates=TemplateConfig(size=256, inplane=4, max_keypoints=512, scales=(1.0, 0.55)),
            matching=MatchingConfig(
                max_ratio=0.9,
                ratio_radius=8.0,
                mutual=False,
                shortlist=4,
                shortlist_rows=64,
                preselect=32,
                spread_rows=32,
            ),
            pnp=PnPConfig(min_inliers=12, min_inlier_pixels=12, iterations=300),
            flips=FlipConfig(enabled=True),
            verify=VerifyConfig(enabled=True),
        )
    if backend == "xfeat":
        return EstimatorConfig(
            backend="xfeat",
            templates=TemplateConfig(inplane=4, background=(128, 128, 128)),
            matching=MatchingConfig(max_ratio=1.0),
        )
    raise ValueError(f"unknown backend {backend!r}; choose 'ockd', 'sift' or 'xfeat'")


@dataclass
class ObjectPose:
    """A found object: `T_cam_obj` as R (3×3) and t (3, metres, camera optical frame).

    score: inlier fraction of the template's matches. inliers: PnP inlier count.
    keypoints: inliers×2 frame pixels of the inlier matches. template: index in the object's bank.
    symmetric: the object has symmetries, so ADD-S is the metric to judge it by.
    """

    name: str
    R: np.ndarray
    t: np.ndarray
    score: float
    inliers: int
    keypoints: np.ndarray
    template: int
    symmetric: bool

    @property
    def matrix(self) -> np.ndarray:
        """The pose as a 4×4 `T_cam_obj`."""
        return make_pose(self.R, self.t)


@dataclass
class PreparedFrame:
    """An image ready to be searched: features (keypoints in image pixels), the grey image for
    the colour check (None when it is off), K, D, the image's H×W, the extraction time and the
    scale the image was resized by before extraction."""

    features: Features
    grey: GreyFrame | None
    K: np.ndarray
    D: np.ndarray | None
    shape: tuple[int, int]
    extract_seconds: float
    scale: float = 1.0
    _lookups: dict[float | None, FrameLookup] = field(default_factory=dict, repr=False)

    def lookup(self, grid_spacing: float | None) -> FrameLookup:
        """The features binned for look-ups near pixels (`pose.verify`), made once per frame.
        grid_spacing: pixels between keypoints of a dense grid at the extraction scale."""
        if grid_spacing not in self._lookups:
            spacing = None if grid_spacing is None else grid_spacing / self.scale
            self._lookups[grid_spacing] = FrameLookup.of(self.features, spacing)
        return self._lookups[grid_spacing]


@dataclass
class _Found:
    """An object's pose in one frame before it becomes an `ObjectPose`: the PnP result, the N×3
    object points and N×2 pixels its inliers index, its template and its score."""

    result: PnPResult
    points: np.ndarray
    pixels: np.ndarray
    template: int
    score: float


@dataclass
class _Matched:
    """An object's candidate frame keypoints (N×2 pixels) and their matches with its templates;
    once judged, its PnP hypotheses with their agreement (kept: a refused object may be judged
    again, with objects found after it hiding some of its points)."""

    keypoints: np.ndarray
    matches: TemplateMatches
    judged: list[tuple[Agreement, _Found]] | None = None


# Points sampled on a found object's surface to draw it into the occlusion map: at 4-px cells
# they cover an object a few hundred pixels wide (the map closes gaps of a cell).
SURFACE_SAMPLES = 5000


@dataclass
class EstimateTiming:
    """Seconds spent in each step of one `estimate` call (per-object steps summed; with
    `EstimatorConfig.parallel`, select and match overlap pnp, so the steps add up to more than
    the total)."""

    extract: float = 0.0
    select: float = 0.0
    match: float = 0.0
    pnp: float = 0.0
    total: float = 0.0


class Estimator:
    """Finds `objects` in RGB images by matching against their template banks.

    Banks come from the cache or are built on first use (rendering needs a GL context: one is
    opened only when a bank is missing, or `renderer` is used when given). `extractor` replaces
    the backend `conf.backend` would create; its name must match `conf.backend`.
    """

    def __init__(
        self,
        conf: EstimatorConfig,
        objects: Sequence[ObjectMesh],
        extractor: FeatureExtractor | None = None,
        renderer: Renderer | None = None,
        progress: bool = False,
    ):
        conf.validate()
        names = [obj.name for obj in objects]
        if len(set(names)) != len(names):
            raise ValueError(f"object names must be unique, got {names}")
        if extractor is not None and extractor.name != conf.backend:
            raise ValueError(
                f"extractor {extractor.name!r} given but conf.backend={conf.backend!r}"
            )
        self.conf = conf
        self.extractor = extractor or create_extractor(conf.backend, conf.features)
        self.objects = {obj.name: obj for obj in objects}
        self.banks, self.built = self._load_banks(renderer, progress)
        self._bank_desc = {
            name: BankDescriptors(
                bank.descriptors, bank.template_ids, bank.num_templates, _scale_groups(bank)
            )
            for name, bank in self.banks.items()
        }
        # Per object, computed here rather than in the first frame that needs them: its
        # bounding-box centre (templates look at it, look-alike faces turn about it), the turns
        # onto look-alike faces, its diameter (poses agree within a share of it) and points on
        # its surface (to draw it into the occlusion map).
        self._centres = {obj.name: obj.mesh.bounds.mean(axis=0) for obj in objects}
        self._turns = {
            obj.name: box_turns(np.ptp(obj.mesh.bounds, axis=0), conf.flips.extent_tolerance)
            for obj in objects
        }
        self._diameters = {obj.name: obj.diameter for obj in objects}
        self._surfaces = {
            obj.name: np.asarray(
                trimesh.sample.sample_surface(obj.mesh, SURFACE_SAMPLES, seed=0)[0], np.float64
            )
            for obj in objects
        }
        # Worker threads (`conf.parallel`), made on first use.
        self._matcher: ThreadPoolExecutor | None = None
        self._solver: ThreadPoolExecutor | None = None
        self.last_timing = EstimateTiming()
        self.last_status: dict[str, str] = {}

    def template_scale(self, name: str, R: np.ndarray, t: np.ndarray, K: np.ndarray) -> float:
        """The factor to resize an image by (camera `K`) so that object `name` at (R, t) shows at
        the size it has in its templates: what `prepare(scale=...)` wants around that pose."""
        bank = self.banks[name]
        centre = self._centres[name]
        template_depth = np.linalg.norm(bank.poses[0, :3, :3] @ centre + bank.poses[0, :3, 3])
        depth = float((np.asarray(R) @ centre + np.asarray(t).ravel())[2])
        focal = bank.K[0, 0] * bank.scales[0]
        return float(focal / template_depth * depth / np.asarray(K)[0, 0])

    def warm_up(self, size: tuple[int, int] = (640, 480)) -> float:
        """Search every object once in a noise image of `size` (width, height), extracted twice
        first: an inference engine compiles a model of its own for an image size it sees again
        (features/runtime.py), and first calls allocate, so the first real frame costs what
        later ones do. Returns the seconds it took."""
        width, height = size
        if width < 1 or height < 1:
            raise ValueError(f"warm-up size must be positive, got {size}")
        start = time.perf_counter()
        noise = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        focal = float(max(width, height))
        K = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
        self.prepare(noise, K)
        self.search(self.prepare(noise, K))
        return time.perf_counter() - start

    def estimate(
        self,
        rgb: np.ndarray,
        K: np.ndarray,
        D: np.ndarray | None = None,
        objects: Sequence[str] | None = None,
        regions: Mapping[str, np.ndarray] | None = None,
        templates: Mapping[str, Sequence[int]] | None = None,
        roi: tuple[int, int, int, int] | None = None,
    ) -> list[ObjectPose]:
        """Poses of the `objects` (names; None: all) found in an H×W×3 uint8 RGB image.

        K: 3×3 intrinsics of the image; D: OpenCV distortion coefficients or None.
        regions: per object name, an H×W bool mask of where to look for it (from a detector or
        segmenter, say); objects without one are looked for everywhere.
        templates: per object name, the only templates to match (all of them, no shortlist):
        those near a known view, say. roi: (x0, y0, x1, y1) pixels, features are extracted in
        this window only (cheaper when the objects are known to lie inside it).
        Objects not found are left out; `last_status` gives each object's outcome (FOUND,
        FEW_KEYPOINTS, NO_POSE), `last_timing` where the time went.
        Raises `ValueError` for a malformed image, K, D, region or roi, or an unknown object.
        """
        return self.search(self.prepare(rgb, K, D, roi), objects, regions, templates)

    def prepare(
        self,
        rgb: np.ndarray,
        K: np.ndarray,
        D: np.ndarray | None = None,
        roi: tuple[int, int, int, int] | None = None,
        scale: float | None = None,
    ) -> PreparedFrame:
        """The image's features (in `roi` only, when given), once for any number of searches.

        scale: the image (or roi) is resized by this before extraction (None: `conf.frame_scale`);
        above 1 where objects look smaller than in the templates. Keypoints stay in image pixels.
        """
        start = time.perf_counter()
        check_image(rgb)
        K = check_intrinsics(K)
        D = check_distortion(D)
        scale = check_scale(self.conf.frame_scale if scale is None else float(scale))
        height, width = rgb.shape[:2]
        x0, y0, x1, y1 = (0, 0, width, height) if roi is None else _check_roi(roi, (height, width))
        window = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        if scale != 1.0:
            size = (max(round((x1 - x0) * scale), 1), max(round((y1 - y0) * scale), 1))
            interpolation = cv2.INTER_LINEAR if scale > 1.0 else cv2.INTER_AREA
            window = cv2.resize(window, size, interpolation=interpolation)
        features = self.extractor.extract(window).in_image(x0, y0, (width, height), scale)
        grey = None
        if self.conf.flips.enabled:
            grey = GreyFrame(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), K, D)
        seconds = time.perf_counter() - start
        return PreparedFrame(features, grey, K, D, (height, width), seconds, scale)

    def search(
        self,
        frame: PreparedFrame,
        objects: Sequence[str] | None = None,
        regions: Mapping[str, np.ndarray] | None = None,
        templates: Mapping[str, Sequence[int]] | None = None,
        min_inlier_ratio: float | None = None,
        priors: Mapping[str, ObjectPose] | None = None,
    ) -> list[ObjectPose]:
        """`estimate` on a prepared frame: its features are reused, not extracted again.

        min_inlier_ratio: the share of a template's matches a pose's inliers must make up, when
        other than `conf.pnp`'s (a tracker, whose prior already constrains the pose, asks less).
        priors: per object, its pose in a recent frame: a new pose near it is supported as one
        that another template's pose agrees with is (`verify`).
        """
        start = time.perf_counter()
        names = list(self.objects) if objects is None else list(objects)
        unknown = sorted(set(names) - set(self.objects))
        if unknown:
            raise ValueError(
                f"unknown objects {unknown}; this estimator knows {list(self.objects)}"
            )
        regions = _check_regions(regions or {}, names, frame.shape)
        templates, priors = templates or {}, priors or {}
        pnp = self.conf.pnp
        if min_inlier_ratio is not None:
            pnp = dataclasses.replace(pnp, min_inlier_ratio=min_inlier_ratio)
            pnp.validate()
        timing = EstimateTiming(extract=frame.extract_seconds)
        self.last_status = {}
        occluders = self._occluders(frame)
        found: list[ObjectPose] = []
        refused: dict[str, tuple[_Matched, int]] = {}  # and how many were found when judged
        for name, matched in self._matched_in_turn(names, frame, regions, templates, pnp, timing):
            if matched is None:
                continue
            pose = self._pose(name, frame, matched, pnp, timing, priors.get(name), occluders)
            if pose is None:
                refused[name] = (matched, len(found))
            else:
                found.append(self._occluding(pose, frame, occluders))
        # An object refused before the object hiding part of it was found is judged again.
        for name, (matched, found_then) in refused.items():
            if occluders is not None and len(found) > found_then:
                pose = self._pose(name, frame, matched, pnp, timing, priors.get(name), occluders)
                if pose is not None:
                    found.append(self._occluding(pose, frame, occluders))
        found.sort(key=lambda pose: names.index(pose.name))
        timing.total = frame.extract_seconds + time.perf_counter() - start
        self.last_timing = timing
        return found

    def _matched_in_turn(
        self,
        names: list[str],
        frame: PreparedFrame,
        regions: Mapping[str, np.ndarray],
        templates: Mapping[str, Sequence[int]],
        pnp: PnPConfig,
        timing: EstimateTiming,
    ) -> Iterator[tuple[str, _Matched | None]]:
        """Each object's name and `_match_object` result, in order. With `conf.parallel`, the
        next object's are computed in a worker thread while the caller poses this one: torch
        and OpenCV release the GIL, so the two steps share the cores."""

        def match(name: str) -> _Matched | None:
            return self._match_object(
                name, frame, regions.get(name), templates.get(name), pnp, timing
            )

        if not self.conf.parallel or len(names) < 2:
            for name in names:
                yield name, match(name)
            return
        if self._matcher is None:
            self._matcher = ThreadPoolExecutor(1, thread_name_prefix="ockd-matching")
        pending: Future | None = self._matcher.submit(match, names[0])
        try:
            for following, name in enumerate(names, start=1):
                matched = pending.result()
                pending = None
                if following < len(names):
                    pending = self._matcher.submit(match, names[following])
                yield name, matched
        finally:
            # The caller stopped early (an error): cancel the next match, or wait for it.
            if pending is not None and not pending.cancel():
                pending.exception()

    def _match_object(
        self,
        name: str,
        frame: PreparedFrame,
        region: np.ndarray | None,
        candidates: Sequence[int] | None,
        pnp: PnPConfig,
        timing: EstimateTiming,
    ) -> _Matched | None:
        """The frame keypoints `name` may lie on and their matches with its templates; None
        (status FEW_KEYPOINTS) when too few keypoints are left to look at."""
        bank, features = self.banks[name], frame.features
        step = time.perf_counter()
        selected = select_object(features, bank.inter_mean, self._mask_threshold())
        if region is not None:
            selected = selected[features.in_region(region)[selected]]
        now = time.perf_counter()
        timing.select += now - step
        if len(selected) < pnp.min_inliers:
            self.last_status[name] = FEW_KEYPOINTS
            return None
        matching = self.matching_at(frame.scale)
        if candidates is not None:  # a few known templates: matched in full, no shortlist
            matching = dataclasses.replace(matching, shortlist=0, preselect=0)
            candidates = np.asarray(candidates, dtype=np.int64)
        keypoints = features.keypoints[selected]
        matches = match_templates(
            features.desc_intra[selected], self._bank_desc[name], matching, keypoints, candidates
        )
        timing.match += time.perf_counter() - now
        return _Matched(keypoints, matches)

    def _pose(
        self,
        name: str,
        frame: PreparedFrame,
        matched: _Matched,
        pnp: PnPConfig,
        timing: EstimateTiming,
        prior: ObjectPose | None,
        occluders: Occluders | None,
    ) -> ObjectPose | None:
        """`name`'s pose from its matches (status FOUND), or None (status NO_POSE)."""
        step = time.perf_counter()
        if self.conf.verify.enabled:
            found = self._verified_pose(name, frame, matched, pnp, prior, occluders)
        else:
            bank, keypoints, matches = self.banks[name], matched.keypoints, matched.matches
            found = self._counted_pose(bank, keypoints, matches, frame.K, frame.D, pnp)
        if found is not None and frame.grey is not None:
            found.result = self._face_right(
                name, found.result, found.points, found.pixels, frame.grey
            )
        timing.pnp += time.perf_counter() - step
        self.last_status[name] = NO_POSE if found is None else FOUND
        if found is None:
            return None
        return ObjectPose(
            name=name,
            R=found.result.R,
            t=found.result.t,
            score=found.score,
            inliers=len(found.result.inliers),
            keypoints=found.pixels[found.result.inliers],
            template=found.template,
            symmetric=self.objects[name].symmetric,
        )

    def _occluders(self, frame: PreparedFrame) -> Occluders | None:
        """An empty occlusion map of the frame, when the verifier takes occlusion into account."""
        verify = self.conf.verify
        if not (verify.enabled and verify.occlusion):
            return None
        return Occluders(frame.lookup(self._grid_spacing()))

    def _occluding(
        self, pose: ObjectPose, frame: PreparedFrame, occluders: Occluders | None
    ) -> ObjectPose:
        """`pose`, drawn into the `occluders` of the objects judged after it."""
        if occluders is not None:
            occluders.add(self._surfaces[pose.name], pose.R, pose.t, frame.K, frame.D)
        return pose

    def _counted_pose(
        self,
        bank: TemplateBank,
        keypoints: np.ndarray,
        matches: TemplateMatches,
        K: np.ndarray,
        D,
        pnp: PnPConfig,
    ) -> _Found | None:
        """The PnP pose with most inliers over the templates with most matches, accepted on
        its inliers' count and share of the template's matches."""
        templates = matches.best_templates(self.conf.matching.top_templates, bank.num_templates)
        best = self._best_pnp(bank, keypoints, matches, templates, K, D, pnp)
        if best is None:
            return None
        result, template, count = best
        own = matches.of_template(template)
        return _Found(
            result,
            bank.points[own.bank_index],
            keypoints[own.frame_index],
            template,
            len(result.inliers) / count,
        )

    def _verified_pose(
        self,
        name: str,
        frame: PreparedFrame,
        matched: _Matched,
        pnp: PnPConfig,
        prior: ObjectPose | None = None,
        occluders: Occluders | None = None,
    ) -> _Found | None:
        """Per template with most matches a PnP pose, judged by how the template's points agree
        with the frame's descriptors (`pose.verify`), if need be only where no object found
        nearer (`occluders`) hides them; the best (`verify.strongest`), if verified, refined on
        the templates near its view."""
        conf, bank = self.conf.verify, self.banks[name]
        lookup = frame.lookup(self._grid_spacing())
        if matched.judged is None:
            hypotheses = self._hypotheses(bank, frame, matched.keypoints, matched.matches, pnp)
            matched.judged = [(self._agreement(lookup, name, h, frame), h) for h in hypotheses]
        judged = matched.judged
        if not judged:
            return None
        evidence, best = strongest(
            judged, conf, lambda a, b: self._same_pose(name, a.result, b.result)
        )
        supported = self._supported(name, best, judged, prior)
        if not verified(evidence, supported, conf) and not self._verified_unhidden(
            lookup, name, frame, best, supported, occluders
        ):
            return None
        best.score = evidence.share(conf.agreement)
        return self._refined(lookup, name, frame, best, evidence) or best

    def _verified_unhidden(
        self,
        lookup: FrameLookup,
        name: str,
        frame: PreparedFrame,
        found: _Found,
        supported: bool,
        occluders: Occluders | None,
    ) -> bool:
        """Whether `found` is verified by the points of its template that no object found
        nearer hides (a bottle half behind a box agrees with the frame on its visible half)."""
        if occluders is None or occluders.empty:
            return False
        unhidden = self._agreement(lookup, name, found, frame, occluders)
        return verified(unhidden, supported, self.conf.verify)

    def _same_pose(self, name: str, a: PnPResult, b: PnPResult | ObjectPose) -> bool:
        """Whether two poses of `name` agree within `verify`'s support tolerances."""
        conf = self.conf.verify
        metres = conf.support_diameters * self._diameters[name]
        return same_pose(a.R, a.t, b.R, b.t, conf.support_degrees, metres)

    def _supported(
        self,
        name: str,
        best: _Found,
        judged: list[tuple[Agreement, _Found]],
        prior: ObjectPose | None,
    ) -> bool:
        """Whether another template's pose, or the object's recent pose, agrees with `best`'s."""
        others = [f.result for _, f in judged if f.template != best.template]
        if prior is not None:
            others.append(prior)
        return any(self._same_pose(name, best.result, other) for other in others)

    def _hypotheses(
        self,
        bank: TemplateBank,
        frame: PreparedFrame,
        keypoints: np.ndarray,
        matches: TemplateMatches,
        pnp: PnPConfig,
    ) -> list[_Found]:
        """A PnP pose from each of the `verify.hypotheses` templates with most matches, and one
        from all their matches pooled (their 3D points share the object frame, so the right
        matches of neighbouring views agree on one pose), judged with the first's points."""
        templates = matches.best_templates(
            self.conf.verify.hypotheses, bank.num_templates, self._bank_desc[bank.name].groups
        )
        problems = []  # (template, points, pixels)
        for template in templates:
            own = matches.of_template(template)
            problems.append((template, bank.points[own.bank_index], keypoints[own.frame_index]))
        if self.conf.verify.pooled and len(templates) > 1:
            pooled = np.isin(matches.template, templates)
            points = bank.points[matches.bank_index[pooled]]
            problems.append((templates[0], points, keypoints[matches.frame_index[pooled]]))
        solved = self._solved([(points, pixels) for _, points, pixels in problems], frame, pnp)
        return [
            _Found(result, points, pixels, template, 0.0)
            for (template, points, pixels), result in zip(problems, solved, strict=True)
            if result is not None
        ]

    def _solved(
        self, problems: list[tuple[np.ndarray, np.ndarray]], frame: PreparedFrame, pnp: PnPConfig
    ) -> list[PnPResult | None]:
        """`solve_pnp` of each (points, pixels); with `conf.parallel`, side by side in worker
        threads (OpenCV releases the GIL)."""

        def solve(problem: tuple[np.ndarray, np.ndarray]) -> PnPResult | None:
            return solve_pnp(*problem, frame.K, frame.D, pnp)

        if not self.conf.parallel or len(problems) < 2:
            return [solve(problem) for problem in problems]
        if self._solver is None:
            workers = max(1, torch.get_num_threads())
            self._solver = ThreadPoolExecutor(workers, thread_name_prefix="ockd-pnp")
        return list(self._solver.map(solve, problems))

    def _rows(self, name: str, templates: Sequence[int]) -> np.ndarray:
        """Bank rows of `name`'s templates (ascending), from the bank's row offsets."""
        return self._bank_desc[name].strongest_rows(None, np.asarray(templates, np.int64))

    def _agreement(
        self,
        lookup: FrameLookup,
        name: str,
        found: _Found,
        frame: PreparedFrame,
        occluders: Occluders | None = None,
    ) -> Agreement:
        """How the points of `found`'s template agree with the frame at its pose."""
        bank = self.banks[name]
        rows = self._rows(name, [found.template])
        R, t = found.result.R, found.result.t
        return agreement(
            lookup,
            bank.points[rows],
            bank.descriptors[rows],
            R,
            t,
            frame.K,
            frame.D,
            self.conf.verify.radius,
            occluders,
            self.conf.verify.occlusion_metres,
        )

    def _refined(
        self,
        lookup: FrameLookup,
        name: str,
        frame: PreparedFrame,
        found: _Found,
        evidence: Agreement,
    ) -> _Found | None:
        """`found` refined on every point of the templates near its view (`verify.refine`), or
        None when the refinement fails or its pose agrees less with the frame."""
        conf, bank = self.conf.verify, self.banks[name]
        # Views of one scale only, the one nearest the size the object shows at: descriptors of
        # another scale agree less, or by chance, and the finer grid of the larger scale makes
        # a near object's pose more precise even when a smaller template found it.
        scale = self._scale_shown(name, found.result, frame)
        near = np.flatnonzero(
            (bank.view_angles(found.result.R, found.result.t) <= conf.refine_degrees)
            & (bank.scales == scale)
        )
        rows = self._rows(name, near if len(near) else [found.template])
        result = found.result
        refined = refine(
            lookup,
            bank.points[rows],
            bank.descriptors[rows],
            result.R,
            result.t,
            frame.K,
            frame.D,
            conf,
        )
        if refined is None:
            return None
        everything = np.arange(len(refined.points))
        candidate = _Found(
            PnPResult(refined.R, refined.t, everything),
            refined.points,
            refined.pixels,
            found.template,
            found.score,
        )
        after = self._agreement(lookup, name, candidate, frame)
        if after.count(conf.agreement) < evidence.count(conf.agreement):
            return None
        candidate.score = after.share(conf.agreement)
        return candidate

    def _scale_shown(self, name: str, pose: PnPResult, frame: PreparedFrame) -> float:
        """The scale of `name`'s bank nearest (in ratio) the size the object shows at `pose` in
        the image the network saw (the frame resized by its scale)."""
        bank = self.banks[name]
        shown = bank.scales[0] * frame.scale / self.template_scale(name, pose.R, pose.t, frame.K)
        scales = np.unique(bank.scales)
        return float(scales[np.argmin(np.abs(np.log(scales / shown)))])

    def matching_at(self, scale: float) -> MatchingConfig:
        """The matching settings for features extracted at `scale`: the ratio test's radius is
        meant in pixels of the image the network saw."""
        radius = self.conf.matching.ratio_radius / scale
        return dataclasses.replace(self.conf.matching, ratio_radius=radius)

    def _best_pnp(
        self,
        bank: TemplateBank,
        keypoints: np.ndarray,
        matches: TemplateMatches,
        templates: list[int],
        K: np.ndarray,
        D,
        pnp: PnPConfig,
    ) -> tuple[PnPResult, int, int] | None:
        """The PnP result with most inliers over the candidate templates, its template and the
        template's match count; None if no template gives a pose with enough inliers, in number
        and as a share of its matches."""
        best = None
        for template in templates:
            own = matches.of_template(template)
            result = solve_pnp(bank.points[own.bank_index], keypoints[own.frame_index], K, D, pnp)
            if result is None or len(result.inliers) < pnp.min_inlier_ratio * len(own):
                continue
            if best is None or len(result.inliers) > len(best[0].inliers):
                best = (result, template, len(own))
        return best

    def _face_right(
        self, name: str, result: PnPResult, points3d, pixels, grey: GreyFrame
    ) -> PnPResult:
        """`result`, or its turn onto the look-alike face whose colours agree better with the
        image (`pose.flips`), refined on the same pixels."""
        turns, centre = self._turns[name], self._centres[name]
        if len(turns) < 2:
            return result
        bank = self.banks[name]
        index = best_turn(bank, turns, centre, result.R, result.t, grey, self.conf.flips)
        if index == 0:
            return result
        R, t = turned_pose(result.R, result.t, turns[index], centre)
        # Where the PnP pose saw X, the turned pose sees turnᵀ(X − centre) + centre.
        turned_points = (points3d - centre) @ turns[index] + centre
        refined = refine_pose(turned_points, pixels, grey.K, grey.D, R, t, self.conf.pnp)
        return refined or PnPResult(R, t, result.inliers)

    def _grid_spacing(self) -> float | None:
        # Dense backends put keypoints on a grid of this many pixels (None: sparse keypoints).
        return float(getattr(self.extractor.conf, "grid_stride", 0)) or None

    def _mask_threshold(self) -> float:
        # The ockd backend defines how close an inter-object descriptor must be to count.
        return float(getattr(self.extractor.conf, "mask_threshold", 0.5))

    def _load_banks(
        self, renderer: Renderer | None, progress: bool
    ) -> tuple[dict[str, TemplateBank], list[str]]:
        """Every object's bank, its rows spread and held in `bank_precision` (`MatchingConfig`),
        and the objects whose banks were built now. Each bank is converted as it is read, so
        that only one bank at a time exists twice (spreading copies its rows)."""
        own_renderer: list[Renderer] = []
        matching = self.conf.matching
        spread = (matching.spread_rows, matching.spread_share)
        precision = BANK_PRECISIONS[matching.bank_precision]

        def renderer_factory() -> Renderer:
            if renderer is not None:
                return renderer
            if not own_renderer:
                own_renderer.append(Renderer())
            return own_renderer[0]

        cache_dir = _cache_dir(self.conf.cache_dir)
        banks, built = {}, []
        try:
            for name, obj in self.objects.items():
                bank, was_built = load_or_build_bank(
                    obj, self.extractor, self.conf.templates, cache_dir, renderer_factory, progress
                )
                banks[name] = bank.spread(*spread).with_precision(precision)
                if was_built:
                    built.append(name)
                    LOG.info("built %s templates of %s", self.extractor.name, name)
        finally:
            for own in own_renderer:
                own.close()
        return banks, built


def _scale_groups(bank: TemplateBank) -> np.ndarray | None:
    """V ints: each template's scale as an index (None for a bank of one scale), so that each
    scale is shortlisted and gives hypotheses on its own: an object seen at one scale would
    otherwise have its pose judged only among the other scale's templates, if those happen to
    win the votes."""
    scales, groups = np.unique(bank.scales, return_inverse=True)
    return groups if len(scales) > 1 else None


def _check_regions(
    regions: Mapping[str, np.ndarray], names: list[str], shape: tuple[int, int]
) -> dict[str, np.ndarray]:
    """`regions` as bool masks of the image's `shape`, for objects being looked for."""
    stray = sorted(set(regions) - set(names))
    if stray:
        raise ValueError(f"regions given for {stray}, which are not looked for ({names})")
    checked = {}
    for name, region in regions.items():
        region = np.asarray(region)
        if region.shape != shape:
            raise ValueError(f"region of {name} is {region.shape}, the image {shape}")
        checked[name] = region.astype(bool, copy=False)
    return checked


def check_scale(scale: float) -> float:
    """`scale`, if an image may be resized by it before extraction."""
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ValueError(f"scale must be in [{MIN_SCALE}, {MAX_SCALE}], got {scale}")
    return scale


def _check_roi(roi: Sequence[int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """`roi` as ints (x0, y0, x1, y1) inside an image of `shape`, with some area."""
    if len(roi) != 4:
        raise ValueError(f"roi must be (x0, y0, x1, y1), got {roi}")
    x0, y0, x1, y1 = (int(v) for v in roi)
    height, width = shape
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"roi {roi} is empty or outside the {width}×{height} image")
    return x0, y0, x1, y1


def _cache_dir(setting: str | None) -> Path | None:
    if setting is None:
        return default_cache_dir()
    return Path(setting) if setting else None
