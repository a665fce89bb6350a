"""The ockd_ros ROS 2 node.

Subscribes to `image` (sensor_msgs/Image, or CompressedImage on `image/compressed`), runs the
feature extractor on the newest frame in a worker thread and publishes `debug_image` with the
keypoints.
Frames that arrive while the worker is busy are dropped and counted, never queued.

    ros2 run ockd_ros pose_node --ros-args --params-file config/pose.yaml
    python -m ockd_ros.ros.node --ros-args -r image:=/camera/color/image_raw
"""

from __future__ import annotations

import sys
import threading
import time

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from ockd_ros.camera_messages import (
    ImageDecodeError,
    compressed_message_to_rgb,
    image_message_to_rgb,
)
from ockd_ros.features import create_extractor
from ockd_ros.ros.frame_slot import LatestFrameSlot
from ockd_ros.ros.messages import rgb_to_image_msg
from ockd_ros.ros.parameters import PARAMETERS, validate
from ockd_ros.visualize import draw_keypoints

NODE_NAME = "ockd_pose_node"
WARN_PERIOD = 5.0  # seconds between repeated warnings about the same kind of bad input


class InvalidParameterError(ValueError):
    pass


class PoseNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        # Set before anything can fail: rclpy destroys a half-built node on shutdown.
        self._slot: LatestFrameSlot = LatestFrameSlot()
        self._worker: threading.Thread | None = None
        self._last_warning: dict[str, float] = {}
        for parameter in PARAMETERS:
            self.declare_parameter(
                parameter.name,
                parameter.default,
                ParameterDescriptor(description=parameter.description),
            )
        reasons = [
            reason
            for parameter in PARAMETERS
            if (reason := validate(parameter.name, self.get_parameter(parameter.name).value))
        ]
        if reasons:
            raise InvalidParameterError("; ".join(reasons))
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._parameters_changed)

        self._extractor = None
        self._extractor_lock = threading.Lock()
        self.frames_processed = 0
        qos = self._camera_qos()
        if self._param("compressed"):
            self.create_subscription(CompressedImage, "image/compressed", self._slot.put, qos)
        else:
            self.create_subscription(Image, "image", self._slot.put, qos)
        self._debug_pub = self.create_publisher(Image, "debug_image", 1)
        self._worker = threading.Thread(target=self._run, name="ockd_inference", daemon=True)
        self._worker.start()

    def destroy_node(self) -> None:
        self._slot.close()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        super().destroy_node()

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _camera_qos(self) -> QoSProfile:
        return (
            qos_profile_sensor_data if self._param("qos") == "sensor_data" else QoSProfile(depth=5)
        )

    def _validate_parameters(self, parameters) -> SetParametersResult:
        reasons = [reason for p in parameters if (reason := validate(p.name, p.value))]
        return SetParametersResult(successful=not reasons, reason="; ".join(reasons))

    def _parameters_changed(self, _parameters) -> None:
        with self._extractor_lock:
            self._extractor = None  # rebuilt with the new values before the next frame

    def _current_extractor(self):
        with self._extractor_lock:
            if self._extractor is None:
                backend = self._param("backend")
                conf = {"max_keypoints": self._param("max_keypoints")}
                if backend == "ockd":
                    conf |= {"r_thr": float(self._param("r_thr")), "device": self._param("device")}
                    conf["checkpoint"] = self._param("checkpoint") or None
                self._extractor = create_extractor(backend, conf)
            return self._extractor

    def _run(self) -> None:
        while (msg := self._slot.take()) is not None:
            try:
                self._process(msg)
            except ImageDecodeError as error:
                self._warn_throttled(f"skipping frame: {error}")
            except Exception as error:  # the node must outlive any single bad frame
                self._warn_throttled(f"frame failed: {type(error).__name__}: {error}")

    def _warn_throttled(self, message: str) -> None:
        """Warn once per WARN_PERIOD per distinct message: a bad stream repeats the same one."""
        now = time.monotonic()
        if now - self._last_warning.get(message, -WARN_PERIOD) >= WARN_PERIOD:
            self._last_warning[message] = now
            self.get_logger().warning(message)

    def _process(self, msg) -> None:
        start = time.perf_counter()
        if isinstance(msg, CompressedImage):
            rgb = compressed_message_to_rgb(msg)
        else:
            rgb = image_message_to_rgb(msg)
        features = self._current_extractor().extract(rgb)
        if self._param("publish_debug_image") or self._debug_pub.get_subscription_count() > 0:
            self._debug_pub.publish(rgb_to_image_msg(draw_keypoints(rgb, features), msg.header))
        self.frames_processed += 1
        self.get_logger().debug(
            f"{len(features)} keypoints in {1000 * (time.perf_counter() - start):.0f} ms, "
            f"{self._slot.dropped} frames dropped so far"
        )


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    try:
        node = PoseNode()
    except InvalidParameterError as error:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"invalid parameters: {error}")
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
