"""The node end to end: a real subprocess, real DDS on loopback (private ROS_DOMAIN_ID)."""

from __future__ import annotations

import numpy as np
import pytest
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ockd_ros.camera_messages import image_message_to_rgb
from ockd_ros.meshes import load_object
from ockd_ros.render import Renderer
from ockd_ros.samples import render_sample_scene
from test.ros_harness import NodeProcess, TestPeer

STARTUP_TIMEOUT = 60.0  # the node imports torch and OpenCV before it subscribes


@pytest.fixture(scope="module")
def scene_rgb():
    with Renderer() as renderer:
        return render_sample_scene(renderer, [load_object("cream_cheese")], (320, 240)).rgb


@pytest.fixture
def peer():
    test_peer = TestPeer()
    yield test_peer
    test_peer.close()


@pytest.fixture
def sift_node(tmp_path):
    process = NodeProcess(tmp_path / "node.log", {"backend": "sift", "publish_debug_image": True})
    yield process
    process.stop()


def _image_msg(rgb: np.ndarray, stamp_sec: int, encoding: str = "rgb8") -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, step=rgb.shape[1] * 3)
    msg.header = Header(frame_id="test_camera_optical_frame")
    msg.header.stamp.sec = stamp_sec
    msg.data = rgb.tobytes()
    return msg


def _connect(peer: TestPeer, node: NodeProcess):
    publisher = peer.node.create_publisher(Image, "image", qos_profile_sensor_data)
    received: list[Image] = []
    peer.node.create_subscription(Image, "debug_image", received.append, 10)
    connected = peer.spin_until(lambda: publisher.get_subscription_count() > 0, STARTUP_TIMEOUT)
    assert connected, f"node never subscribed to image:\n{node.log()}"
    return publisher, received


def _publish_until_answered(peer, publisher, received, msg, timeout=30.0) -> Image:
    """Publish (best effort may drop a frame) until the answer with msg's stamp arrives."""
    stamp = msg.header.stamp.sec
    for _ in range(int(timeout)):
        publisher.publish(msg)
        if peer.spin_until(lambda: any(r.header.stamp.sec == stamp for r in received), 1.0):
            return next(r for r in received if r.header.stamp.sec == stamp)
    raise AssertionError(f"no debug image for stamp {stamp}")


def test_debug_image_carries_the_source_header_and_keypoints(peer, sift_node, scene_rgb):
    publisher, received = _connect(peer, sift_node)
    answer = _publish_until_answered(peer, publisher, received, _image_msg(scene_rgb, 7))
    assert answer.header.frame_id == "test_camera_optical_frame"
    overlay = image_message_to_rgb(answer)
    assert overlay.shape == scene_rgb.shape
    assert np.any(overlay != scene_rgb)  # keypoints drawn on the frame
    assert peer.spin_until(lambda: "keypoints in" in sift_node.log(), 5.0)  # debug statistics


def test_bad_frames_are_logged_and_the_node_keeps_working(peer, sift_node, scene_rgb):
    publisher, received = _connect(peer, sift_node)
    truncated = _image_msg(scene_rgb, 2)
    truncated.data = truncated.data[:-10]
    for bad, symptom in [
        (_image_msg(scene_rgb, 1, encoding="32FC1"), "unsupported image encoding"),
        (truncated, "does not match its header"),
    ]:
        # one at a time: the node keeps only the newest frame
        for _ in range(10):
            publisher.publish(bad)
            if peer.spin_until(lambda s=symptom: s in sift_node.log(), 1.0):
                break
    answer = _publish_until_answered(peer, publisher, received, _image_msg(scene_rgb, 3))
    assert answer.header.stamp.sec == 3
    assert sift_node.alive()
    log = sift_node.log()
    assert "unsupported image encoding '32FC1'" in log
    assert "does not match its header" in log
    assert not any(r.header.stamp.sec in (1, 2) for r in received)


def test_invalid_parameter_is_refused_at_run_time(peer, sift_node):
    client = AsyncParameterClient(peer.node, "ockd_pose_node")
    assert peer.spin_until(lambda: client.services_are_ready(), STARTUP_TIMEOUT), sift_node.log()
    bad = Parameter(
        name="r_thr",
        value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=-1.0),
    )
    good = Parameter(
        name="max_keypoints",
        value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=200),
    )
    futures = [client.set_parameters([bad]), client.set_parameters([good])]
    assert peer.spin_until(lambda: all(f.done() for f in futures), 10.0)
    refused, accepted = (f.result().results[0] for f in futures)
    assert not refused.successful and "r_thr=-1.0 must be ≥ 0" in refused.reason
    assert accepted.successful


def test_invalid_parameter_at_start_exits_with_the_reason(tmp_path):
    node = NodeProcess(tmp_path / "bad.log", {"backend": "orb"})
    try:
        assert node.wait(timeout=STARTUP_TIMEOUT) == 2
        assert "backend='orb' must be one of" in node.log()
    finally:
        node.stop()
