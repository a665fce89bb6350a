"""Bag tools: round trip, eval on a tiny synthetic bag, damaged bags, BOP conversion."""

import json
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Writer
from scipy.spatial.transform import Rotation

from ockd_ros.bag_cli import cli
from ockd_ros.bags import (
    TYPESTORE,
    BagError,
    BagEvalConfig,
    BagSource,
    BagTopics,
    BagWriter,
    BopBagConfig,
    SyntheticBagConfig,
    bop_stamp,
    camera_info_message,
    evaluate_bag,
    frame_stamp,
    from_bop,
    image_message,
    pose_from_message,
    pose_message,
    record_synthetic,
    stamp_ns,
)
from ockd_ros.bags.messages import CAMERA_INFO, IMAGE
from ockd_ros.geometry import make_pose
from ockd_ros.pose import EstimatorConfig, TemplateConfig
from test.paths import LMO

K = np.array([[200.0, 0.0, 79.5], [0.0, 201.0, 59.5], [0.0, 0.0, 1.0]])
OBJECTS = ("cream_cheese", "macaroni_and_cheese")


def _random_pose(rng) -> np.ndarray:
    R = Rotation.random(random_state=rng.integers(1 << 30)).as_matrix()
    return make_pose(R, rng.uniform(-0.2, 0.2, 3) + np.array([0.0, 0.0, 0.6]))


def _write_random_bag(path: Path, storage: str, frames: int = 4) -> list[tuple]:
    rng = np.random.default_rng(1)
    written = []
    with BagWriter(path, storage) as bag:
        for i in range(frames):
            rgb = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
            truth = {"box": _random_pose(rng), "can": _random_pose(rng)}
            bag.write_frame(frame_stamp(i, 10.0), rgb, K, sorted(truth.items()))
            written.append((rgb, truth))
    return written


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_round_trip_gives_identical_messages(tmp_path, storage):
    written = _write_random_bag(tmp_path / "bag", storage)
    with BagSource(tmp_path / "bag") as source:
        assert source.image_count == len(written)
        assert source.gt_names == ["box", "can"]
        frames = list(source.frames())
    assert [f.stamp for f in frames] == [frame_stamp(i, 10.0) for i in range(len(written))]
    for frame, (rgb, truth) in zip(frames, written, strict=True):
        np.testing.assert_array_equal(frame.rgb, rgb)
        np.testing.assert_array_equal(frame.intrinsics.K, K)
        assert frame.intrinsics.size == (160, 120)
        assert sorted(name for name, _ in frame.ground_truth) == sorted(truth)
        for name, T in frame.ground_truth:
            np.testing.assert_allclose(T, truth[name], atol=1e-12)

    # Field by field on the raw messages: what a ROS tool reading the bag would see.
    with AnyReader([tmp_path / "bag"], default_typestore=TYPESTORE) as reader:
        images = [
            reader.deserialize(raw, c.msgtype)
            for c, _, raw in reader.messages()
            if c.topic == "/image"
        ]
    for msg, (rgb, _) in zip(images, written, strict=True):
        expected = image_message(rgb, msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
        assert (msg.encoding, msg.height, msg.width, msg.step) == ("rgb8", 120, 160, 480)
        assert msg.header.frame_id == expected.header.frame_id
        np.testing.assert_array_equal(msg.data, expected.data)


def test_missing_topic_and_bad_type_are_named(tmp_path):
    _write_random_bag(tmp_path / "bag", "sqlite3", frames=1)
    cases = [
        (
            BagTopics(image="/camera/color/image_raw"),
            r"no image topic /camera/color/image_raw.*/image",
        ),
        (BagTopics(camera_info="info"), "no camera info topic /info"),
        (BagTopics(image="gt_poses/box"), r"/gt_poses/box has type.*expected"),
    ]
    for topics, message in cases:
        with pytest.raises(BagError, match=message), BagSource(tmp_path / "bag", topics):
            pass


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_truncated_bag_gives_a_clear_error(tmp_path, storage, capsys):
    _write_random_bag(tmp_path / "bag", storage)
    data_file = next(p for p in (tmp_path / "bag").iterdir() if p.suffix in (".db3", ".mcap"))
    data = data_file.read_bytes()
    data_file.write_bytes(data[: len(data) // 2])
    with (
        pytest.raises(BagError, match=r"corrupt or truncated") as error,
        BagSource(tmp_path / "bag") as source,
    ):
        list(source.frames())
    assert str(tmp_path / "bag") in str(error.value)
    # The command line says the same, without a traceback.
    with pytest.raises(SystemExit) as exit_info:
        cli(["eval", str(tmp_path / "bag"), "--out", str(tmp_path / "out"), "--objects", "x"])
    assert exit_info.value.code == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith("ockd-bag: error: ") and "corrupt or truncated" in stderr
    assert "Traceback" not in stderr


@pytest.fixture(scope="module")
def estimator_conf(tmp_path_factory):
    cache = tmp_path_factory.mktemp("templates")
    return EstimatorConfig(backend="sift", templates=TemplateConfig(views=24), cache_dir=str(cache))


@pytest.fixture(scope="module")
def synthetic_bag(tmp_path_factory, renderer):
    # A closer, higher camera than the training default: 320×240 frames, 24 SIFT templates.
    camera = {"fill": (1.1, 1.4), "elevation_deg": (45.0, 80.0)}
    conf = SyntheticBagConfig(
        objects=OBJECTS, frames=3, size=(320, 240), distractors=(0, 0), scene={"camera": camera}
    )
    return record_synthetic(conf, tmp_path_factory.mktemp("synthetic") / "bag", renderer)


def test_eval_recovers_synthetic_poses(tmp_path, synthetic_bag, estimator_conf, renderer):
    with BagSource(synthetic_bag) as source:
        assert set(source.gt_names) <= set(OBJECTS)
        stamps = [f.stamp for f in source.frames()]
    assert stamps == [frame_stamp(i, 10.0) for i in range(3)]

    conf = BagEvalConfig(objects=OBJECTS, overlays=2, estimator=estimator_conf)
    result = evaluate_bag(conf, synthetic_bag, tmp_path / "out", renderer=renderer)
    assert result.frames == 3 and result.error is None

    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    summaries = {s["name"]: s for s in metrics["summaries"]}
    assert summaries["all"]["found"] >= 1
    # Recall at 10 % of the diameter, in percent, over every found and missed instance.
    assert summaries["all"]["recall"] >= 50.0
    report = result.report.read_text()
    for name in OBJECTS:
        assert name in report
    for picture in ("times.png", "accuracy.png"):
        assert (tmp_path / "out" / picture).is_file()
    assert len(list((tmp_path / "out").glob("overlay_*.png"))) == 2

    # The results bag: one pose per found object and frame, at the images' stamps.
    with AnyReader([result.results_bag], default_typestore=TYPESTORE) as reader:
        poses = [(c.topic, reader.deserialize(raw, c.msgtype)) for c, _, raw in reader.messages()]
    assert poses and all(topic.startswith("/object_poses/") for topic, _ in poses)
    assert {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in poses} <= set(stamps)
    for _, msg in poses:
        assert np.isfinite(pose_from_message(msg)).all()


def test_eval_skips_bad_frames_as_the_node_does_and_counts_them(
    tmp_path, synthetic_bag, estimator_conf
):
    """A corrupt image and a CameraInfo with a zero K in the middle of a bag: each is skipped
    (the image; the image that follows the CameraInfo) and counted with its reason, and every
    other frame is evaluated."""
    bag = tmp_path / "bad_frames"
    with BagSource(synthetic_bag) as source:
        good = list(source.frames())
    frames = [good[0], good[1], good[2], good[1], good[2]]  # re-stamped: five frames
    with BagWriter(bag) as out:
        for index, frame in enumerate(frames):
            stamp, size = frame_stamp(index, 10.0), frame.intrinsics.size
            K = np.zeros((3, 3)) if index == 2 else frame.intrinsics.K
            out.write("/camera_info", camera_info_message(K, size, stamp))
            image = image_message(frame.rgb, stamp)
            if index == 1:
                image.data = image.data[: len(image.data) // 2]  # cut: rows missing
            out.write("/image", image)
            for name, T in frame.ground_truth:
                out.write(f"/gt_poses/{name}", pose_message(T, stamp))

    conf = BagEvalConfig(objects=OBJECTS, overlays=0, estimator=estimator_conf)
    result = evaluate_bag(conf, bag, tmp_path / "out")
    assert (result.frames, result.skipped, result.error) == (3, 2, None)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["frames"] == 3 and metrics["error"] is None
    reasons = sorted(metrics["skipped"])
    assert len(reasons) == 2 and all(metrics["skipped"][r] == 1 for r in reasons)
    assert "image data does not match its header" in reasons[1]
    assert "CameraInfo has an unusable K" in reasons[0]
    assert sorted({r["im_id"] for r in metrics["instances"]}) == [0, 3, 4]
    report = result.report.read_text()
    assert "frames evaluated: 3" in report
    for reason in reasons:
        assert f"{reason}: 1" in report
    with AnyReader([result.results_bag], default_typestore=TYPESTORE) as reader:
        stamps = {stamp_ns(reader.deserialize(raw, c.msgtype)) for c, _, raw in reader.messages()}
    assert stamps and stamps <= {frame_stamp(i, 10.0) for i in (0, 3, 4)}  # only frames evaluated


def test_eval_keeps_results_before_storage_that_cannot_be_read(
    tmp_path, synthetic_bag, estimator_conf
):
    # Two good frames, then an image message whose bytes are cut short: not a frame to skip but
    # a damaged bag, so the run stops there and keeps what came before.
    bag = tmp_path / "damaged"
    with BagSource(synthetic_bag) as source:
        frames = list(source.frames())[:2]
    with Writer(bag, version=9) as writer:
        info = writer.add_connection("/camera_info", CAMERA_INFO, typestore=TYPESTORE)
        image = writer.add_connection("/image", IMAGE, typestore=TYPESTORE)
        for frame in frames:
            size = frame.intrinsics.size
            msg = camera_info_message(frame.intrinsics.K, size, frame.stamp)
            writer.write(info, frame.stamp, TYPESTORE.serialize_cdr(msg, CAMERA_INFO))
            msg = image_message(frame.rgb, frame.stamp)
            writer.write(image, frame.stamp, TYPESTORE.serialize_cdr(msg, IMAGE))
        stamp = frame_stamp(2, 10.0)
        raw = TYPESTORE.serialize_cdr(image_message(frames[0].rgb, stamp), IMAGE)
        writer.write(image, stamp, raw[: len(raw) // 2])
    conf = BagEvalConfig(objects=OBJECTS[:1], overlays=0, estimator=estimator_conf)
    with pytest.raises(BagError, match=r"cannot decode a sensor_msgs.*results of the 2 frames"):
        evaluate_bag(conf, bag, tmp_path / "out")
    assert "stopped early" in (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "poses" / "metadata.yaml").is_file()
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["frames"] == 2


@pytest.fixture
def lmo_slice(tmp_path):
    """The first two annotated frames of LM-O scene 2, as a BOP dataset of their own."""
    if not (LMO / "test" / "000002").is_dir():
        pytest.skip(f"LM-O not found at {LMO}")
    root = tmp_path / "lmo2"
    scene = root / "test" / "000002"
    (scene / "rgb").mkdir(parents=True)
    for folder in ("models", "models_eval"):
        (root / folder).symlink_to(LMO / folder)
    keys = sorted(json.loads((LMO / "test/000002/scene_gt.json").read_text()), key=int)[:2]
    for name in ("scene_gt.json", "scene_camera.json"):
        data = json.loads((LMO / "test" / "000002" / name).read_text())
        (scene / name).write_text(json.dumps({k: data[k] for k in keys}))
    for key in keys:
        image = f"{int(key):06d}.png"
        (scene / "rgb" / image).symlink_to(LMO / "test" / "000002" / "rgb" / image)
    return root, keys


def test_from_bop_stamps_intrinsics_and_poses(tmp_path, lmo_slice):
    root, keys = lmo_slice
    bag = from_bop(BopBagConfig(dataset=str(root), storage="mcap"), tmp_path / "bag")
    gt = json.loads((root / "test/000002/scene_gt.json").read_text())
    cameras = json.loads((root / "test/000002/scene_camera.json").read_text())
    with BagSource(bag) as source:
        frames = list(source.frames())
    assert [f.stamp for f in frames] == [bop_stamp(2, int(k), 10.0) for k in keys]
    for frame, key in zip(frames, keys, strict=True):
        assert frame.rgb.shape == (480, 640, 3)
        np.testing.assert_allclose(frame.intrinsics.K.reshape(-1), cameras[key]["cam_K"])
        truth = dict(frame.ground_truth)  # one instance of each object in these frames
        assert sorted(truth) == sorted(f"obj_{e['obj_id']:06d}" for e in gt[key])
        for entry in gt[key]:
            T = truth[f"obj_{entry['obj_id']:06d}"]
            R = np.reshape(entry["cam_R_m2c"], (3, 3))
            # LM-O matrices are off a rotation by ~1e-4; a quaternion holds the nearest one.
            U, _, Vt = np.linalg.svd(R)
            np.testing.assert_allclose(T[:3, :3], U @ Vt, atol=1e-6)
            np.testing.assert_allclose(T[:3, :3], R, atol=1e-3)
            np.testing.assert_allclose(T[:3, 3], np.array(entry["cam_t_m2c"]) / 1000, atol=1e-9)


def test_cli_from_bop_never_overwrites_a_bag(tmp_path, lmo_slice, capsys):
    root, _ = lmo_slice
    bag = tmp_path / "bag"
    args = ["from-bop", "--dataset", str(root), "--out", str(bag), "--max-frames", "1"]
    cli(args)
    assert "bag:" in capsys.readouterr().out
    written = {path: path.read_bytes() for path in bag.iterdir()}
    with pytest.raises(SystemExit) as exit_info:
        cli(args)
    assert exit_info.value.code == 1
    error = f"ockd-bag: error: {bag} exists already; a bag is never overwritten"
    assert capsys.readouterr().err.strip() == error
    assert {path: path.read_bytes() for path in bag.iterdir()} == written
