"""A small rclpy client for driving the pose node from outside: the demo, the benchmarks and
the tests publish camera frames and wait for answers through it."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ockd_ros.ros.messages import camera_info_msg, rgb_to_image_msg


class Peer:
    """An rclpy node with its own context and executor, so it never touches the global one."""

    def __init__(self, name: str, poll: float = 0.02):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.poll = poll

    def spin_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Process callbacks until `condition()` holds or `timeout` seconds pass; its last value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            self.executor.spin_once(timeout_sec=self.poll)
        return condition()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class CameraPublisher:
    """Publishes a frame as the pose node expects it: CameraInfo, then the Image, one header."""

    def __init__(self, node: Node, qos: QoSProfile, image="image", camera_info="camera_info"):
        self.image = node.create_publisher(Image, image, qos)
        self.info = node.create_publisher(CameraInfo, camera_info, qos)

    def publish(self, rgb: np.ndarray, K: np.ndarray, stamp_ns: int, frame_id: str) -> None:
        header = self._header(stamp_ns, frame_id)
        self.info.publish(camera_info_msg(K, (rgb.shape[1], rgb.shape[0]), header))
        self.image.publish(rgb_to_image_msg(rgb, header))

    def publish_info(self, K: np.ndarray, size: tuple[int, int], stamp_ns: int, frame_id: str):
        """The CameraInfo alone, as a driver publishes it before its first image arrives."""
        self.info.publish(camera_info_msg(K, size, self._header(stamp_ns, frame_id)))

    @staticmethod
    def _header(stamp_ns: int, frame_id: str) -> Header:
        header = Header(frame_id=frame_id)
        header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 10**9)
        return header

    def connected(self) -> bool:
        """Both topics have a subscriber: a frame sent when only the Image had one would reach
        the node without its CameraInfo and be skipped."""
        return self.image.get_subscription_count() > 0 and self.info.get_subscription_count() > 0
