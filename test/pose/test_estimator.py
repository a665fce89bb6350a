import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ockd_ros.features import create_extractor
from ockd_ros.features.ockd import OckdConfig, OckdExtractor
from ockd_ros.meshes import load_object, resolve_object
from ockd_ros.model.network import NetworkConfig, OCKDNet
from ockd_ros.pose import Estimator, EstimatorConfig, TemplateConfig, default_config
from ockd_ros.pose.estimator import FEW_KEYPOINTS, FOUND
from ockd_ros.pose.matching import MatchingConfig
from ockd_ros.samples import render_sample_scene
from test.scene_checks import assert_found_at_true_poses

NAMES = ("macaroni_and_cheese", "orange_juice")  # textured enough for SIFT from most sides


@pytest.fixture(scope="module")
def objects():
    return [load_object(name) for name in NAMES]


@pytest.fixture(scope="module")
def scene(renderer, objects):
    return render_sample_scene(renderer, objects, seed=0)


@pytest.fixture(scope="module")
def sift_conf(tmp_path_factory):
    return EstimatorConfig(
        backend="sift",
        templates=TemplateConfig(views=24),
        cache_dir=str(tmp_path_factory.mktemp("templates")),
    )


@pytest.fixture(scope="module")
def estimator(renderer, objects, sift_conf):
    return Estimator(sift_conf, objects, renderer=renderer)


def test_sift_pipeline_recovers_two_objects_at_known_poses(estimator, scene):
    poses = {p.name: p for p in estimator.estimate(scene.rgb, scene.K)}
    assert sorted(poses) == sorted(NAMES)
    assert estimator.last_status == dict.fromkeys(NAMES, FOUND)
    for index, name in enumerate(NAMES):
        pose, truth = poses[name], scene.poses[index]
        assert np.linalg.norm(pose.t - truth[:3, 3]) < 0.01
        angle = Rotation.from_matrix(pose.R.T @ truth[:3, :3]).magnitude()
        assert np.degrees(angle) < 5.0
        assert pose.inliers >= estimator.conf.pnp.min_inliers and 0 < pose.score <= 1
        assert pose.keypoints.shape == (pose.inliers, 2) and not pose.symmetric
        assert 0 <= pose.template < estimator.banks[name].num_templates
        pixels = np.round(pose.keypoints).astype(int)
        assert np.mean(scene.view.labels[pixels[:, 1], pixels[:, 0]] == index + 1) > 0.9
    timing = estimator.last_timing
    assert timing.extract > 0 and timing.match > 0 and timing.pnp > 0
    # The next object's matching overlaps this one's PnP, in a worker thread.
    assert timing.extract + timing.pnp <= timing.total


def test_parallel_search_gives_the_poses_of_a_sequential_one(
    estimator, renderer, objects, sift_conf, scene
):
    conf = dataclasses.replace(sift_conf, parallel=False)
    sequential = Estimator(conf, objects, renderer=renderer)
    expected = sequential.estimate(scene.rgb, scene.K)
    timing = sequential.last_timing
    assert timing.extract + timing.select + timing.match + timing.pnp <= timing.total
    for _ in range(2):  # the worker threads serve every search
        poses = estimator.estimate(scene.rgb, scene.K)
        assert [p.name for p in poses] == [p.name for p in expected] == list(NAMES)
        for pose, same in zip(poses, expected, strict=True):
            np.testing.assert_array_equal(pose.R, same.R)
            np.testing.assert_array_equal(pose.t, same.t)
            np.testing.assert_array_equal(pose.keypoints, same.keypoints)
        assert estimator.last_status == sequential.last_status


def test_shipped_ockd_model_recovers_two_objects_at_known_poses(renderer, tmp_path):
    """The package's defaults end to end: shipped weights, dense grid, 384 templates each.

    Not every scene works yet (README: about a third of rendered objects within 1 cm/5°,
    most misses turned 90° or 180° onto a look-alike face). This pair at 0.4 m passed for
    seeds 1 and 2 of 0-4 with the defaults of 2026-11-25 (a scan of 50 two-object scenes) and
    must keep working; the rate itself is measured by bench/rendered_pose.py.
    """
    names = ("cream_cheese", "ketchup")
    objects = [load_object(name) for name in names]
    scene = render_sample_scene(renderer, objects, distance=0.4, seed=1)
    conf = dataclasses.replace(default_config("ockd"), cache_dir=str(tmp_path))
    estimator = Estimator(conf, objects, renderer=renderer)
    poses = assert_found_at_true_poses(estimator, scene, names)
    # Hypotheses solved side by side, and the next object matched while one is posed: the poses
    # of a search without worker threads (banks from the cache just written).
    sequential = Estimator(dataclasses.replace(conf, parallel=False), objects)
    for pose in sequential.estimate(scene.rgb, scene.K):
        np.testing.assert_array_equal(pose.R, poses[pose.name].R)
        np.testing.assert_array_equal(pose.t, poses[pose.name].t)
    assert sequential.last_status == estimator.last_status


def test_default_configs_per_backend():
    for backend in ("ockd", "sift"):
        conf = default_config(backend)
        conf.validate()
        assert conf.backend == backend
    with pytest.raises(ValueError, match="unknown backend"):
        default_config("orb")


def test_only_requested_objects_are_looked_for(estimator, scene):
    poses = estimator.estimate(scene.rgb, scene.K, objects=["orange_juice"])
    assert [p.name for p in poses] == ["orange_juice"]
    assert list(estimator.last_status) == ["orange_juice"]


def test_regions_limit_where_each_object_is_looked_for(estimator, scene):
    own = {name: scene.view.labels == index + 1 for index, name in enumerate(NAMES)}
    poses = {p.name: p for p in estimator.estimate(scene.rgb, scene.K, regions=own)}
    assert sorted(poses) == sorted(NAMES)
    for name, pose in poses.items():
        pixels = np.round(pose.keypoints).astype(int)
        assert own[name][pixels[:, 1], pixels[:, 0]].all()
    swapped = {NAMES[0]: own[NAMES[1]], NAMES[1]: own[NAMES[0]]}
    assert estimator.estimate(scene.rgb, scene.K, regions=swapped) == []
    empty = {NAMES[0]: np.zeros_like(own[NAMES[0]])}
    poses = estimator.estimate(scene.rgb, scene.K, regions=empty)
    assert [p.name for p in poses] == [NAMES[1]]  # no region: looked for everywhere
    assert estimator.last_status[NAMES[0]] == FEW_KEYPOINTS


def test_symmetric_flag_comes_from_the_object(renderer, sift_conf, scene):
    spec = dataclasses.replace(resolve_object("orange_juice"), symmetric=True)
    estimator = Estimator(sift_conf, [load_object(spec)], renderer=renderer)
    assert not estimator.built  # the bank does not depend on symmetry: cached
    (pose,) = estimator.estimate(scene.rgb, scene.K)
    assert pose.symmetric


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda rgb, K: (rgb, np.zeros((3, 3))), "focal"),
        (lambda rgb, K: (rgb, np.full((3, 3), np.nan)), "non-finite"),
        (lambda rgb, K: (rgb, K[:2]), "3×3"),
        (lambda rgb, K: (rgb.astype(np.float32), K), "uint8"),
        (lambda rgb, K: (rgb[..., 0], K), "H×W×3"),
        (lambda rgb, K: (rgb[:8, :8], K), "too small"),
    ],
)
def test_bad_input_raises_a_clear_error(estimator, scene, change, message):
    rgb, K = change(scene.rgb, scene.K)
    with pytest.raises(ValueError, match=message):
        estimator.estimate(rgb, K)


def test_bad_arguments(estimator, scene, objects, sift_conf):
    with pytest.raises(ValueError, match="unknown objects"):
        estimator.estimate(scene.rgb, scene.K, objects=["ketchup"])
    with pytest.raises(ValueError, match="distortion"):
        estimator.estimate(scene.rgb, scene.K, D=[0.1, np.nan, 0.0, 0.0])
    region = np.ones(scene.rgb.shape[:2], bool)
    with pytest.raises(ValueError, match="not looked for"):
        estimator.estimate(scene.rgb, scene.K, objects=[NAMES[0]], regions={NAMES[1]: region})
    with pytest.raises(ValueError, match="region of"):
        estimator.estimate(scene.rgb, scene.K, regions={NAMES[0]: region[:-1]})
    with pytest.raises(ValueError, match="unique"):
        Estimator(sift_conf, [objects[0], objects[0]])
    with pytest.raises(ValueError, match="backend"):
        Estimator(sift_conf, objects, extractor=create_extractor("ockd", {"device": "cpu"}))


def test_image_without_objects_finds_nothing(estimator, scene):
    blank = np.full_like(scene.rgb, 90)
    assert estimator.estimate(blank, scene.K) == []
    assert set(estimator.last_status.values()) == {FEW_KEYPOINTS}


def test_warm_up_searches_every_object_once_and_changes_nothing(estimator, scene):
    before = {p.name: p.t for p in estimator.estimate(scene.rgb, scene.K)}
    seconds = estimator.warm_up((320, 240))
    assert seconds > 0 and set(estimator.last_status) == set(NAMES)
    after = {p.name: p.t for p in estimator.estimate(scene.rgb, scene.K)}
    assert after.keys() == before.keys() == set(NAMES)
    for name in NAMES:
        np.testing.assert_allclose(after[name], before[name], atol=1e-3)
    with pytest.raises(ValueError, match="warm-up size"):
        estimator.warm_up((0, 480))


def test_ockd_backend_recovers_a_template_pose_with_any_network(renderer, objects, tmp_path):
    """The ockd path end to end, independent of training: a frame that is one of an object's
    own templates gives, even through an untrained network, the same keypoints and descriptors
    as the bank holds, so the estimator must return that template's pose."""
    torch.manual_seed(0)
    model = OCKDNet(NetworkConfig(decoder_channels=(32, 16)))
    with torch.no_grad():
        model.reliability_head.bias.fill_(3.0)  # fire everywhere: enough keypoints per template
    extractor = OckdExtractor(OckdConfig(device="cpu", max_keypoints=300), model=model)
    templates = TemplateConfig(views=4, size=192)
    conf = EstimatorConfig(
        backend="ockd",
        templates=templates,
        matching=MatchingConfig(bank_precision="float16"),
        cache_dir=str(tmp_path),
    )
    estimator = Estimator(conf, objects, extractor=extractor, renderer=renderer)
    for obj in objects:
        bank = estimator.banks[obj.name]
        assert bank.descriptors.shape[1] == 64 and bank.descriptors.dtype == np.float16
        assert np.linalg.norm(bank.inter_mean) == pytest.approx(1.0, abs=1e-5)
        template = int(np.bincount(bank.template_ids).argmax())  # the one with most keypoints
        T_cam_obj = bank.poses[template]
        view = renderer.render(
            [obj], [T_cam_obj], bank.K, bank.size, background=templates.background
        )
        poses = {p.name: p for p in estimator.estimate(view.rgb, bank.K)}
        assert set(estimator.last_status) == set(NAMES)
        assert obj.name in poses, estimator.last_status
        pose = poses[obj.name]
        assert pose.template == template and pose.inliers >= conf.pnp.min_inliers
        assert np.linalg.norm(pose.t - T_cam_obj[:3, 3]) < 1e-3
        assert np.degrees(Rotation.from_matrix(pose.R.T @ T_cam_obj[:3, :3]).magnitude()) < 0.5
        assert estimator.last_timing.extract > 0 and estimator.last_timing.pnp > 0


def test_template_scale_is_one_at_a_template_and_follows_depth_and_focal(estimator, objects):
    name = NAMES[0]
    bank = estimator.banks[name]
    R, t = bank.poses[5, :3, :3], bank.poses[5, :3, 3]
    assert estimator.template_scale(name, R, t, bank.K) == pytest.approx(1.0)
    centre = objects[0].mesh.bounds.mean(axis=0)
    twice_as_far = 2.0 * (R @ centre + t) - R @ centre
    assert estimator.template_scale(name, R, twice_as_far, bank.K) == pytest.approx(2.0)
    wide = bank.K.copy()
    wide[:2, :2] /= 2.0
    assert estimator.template_scale(name, R, t, wide) == pytest.approx(2.0)
