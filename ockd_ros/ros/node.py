"""The ockd_ros pose node.

Subscribes to `image` (sensor_msgs/Image, or CompressedImage on `<image>/compressed`) and
`camera_info`; estimates the pose of each configured object in the newest frame on a worker
thread and publishes, stamped like the source image:
- `object_poses/<name>` (geometry_msgs/PoseStamped): the object frame in the camera optical frame;
- `object_markers` (visualization_msgs/MarkerArray): keypoints, axes, label and mesh per object;
- `debug_image` (sensor_msgs/Image): the overlay, while someone subscribes or when enabled;
- `/diagnostics`: processing time, dropped frames, objects found, once a second.
Frames that arrive while the worker is busy are dropped and counted, never queued. A change of
an estimator parameter builds a new estimator on a thread of its own, which is swapped in when
ready: parameter services answer meanwhile and the worker goes on with the previous estimator.

    ros2 run ockd_ros pose_node --ros-args --params-file config/pose.yaml
    python -m ockd_ros.ros.node --ros-args -r image:=/camera/color/image_raw
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import cv2
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ockd_ros.camera_messages import (
    CameraIntrinsics,
    ImageDecodeError,
    camera_info_to_intrinsics,
    compressed_message_to_rgb,
    image_message_to_rgb,
)
from ockd_ros.meshes import load_object, resolve_object
from ockd_ros.pose.estimator import EstimateTiming, Estimator, ObjectPose
from ockd_ros.pose.tracking import TRACKED, PoseFilter, PoseFilterConfig, Tracker, TrackingConfig
from ockd_ros.ros.frame_slot import LatestFrameSlot
from ockd_ros.ros.messages import diagnostics, object_markers, pose_stamped, rgb_to_image_msg
from ockd_ros.ros.parameters import (
    PARAMETERS,
    PARAMETERS_BY_NAME,
    Affects,
    declare_parameters,
    estimator_settings,
    object_names,
    pose_topic,
    refusals,
)
from ockd_ros.settings import changed_settings, estimator_config
from ockd_ros.visualize import caption, draw_pose, object_color

NODE_NAME = "ockd_pose_node"
WARN_PERIOD = 5.0  # seconds between repeats of the same warning
STALE_AFTER = 5.0  # seconds without a processed frame before diagnostics warn
DEFAULT_IMAGE_SIZE = (640, 480)  # warm-up size before any CameraInfo came


class InvalidParameterError(ValueError):
    pass


class FrameSkipError(Exception):
    """A frame that cannot be processed; the message says why (logged, throttled)."""


@dataclass(frozen=True)
class EstimatorRecipe:
    """What an estimator is built from: the parameters it depends on, read at one moment."""

    objects: tuple[str, ...]
    mesh_units: str
    settings: dict[str, Any]  # flat names of `ockd_ros.settings`


class PoseNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        # Set before anything can fail: rclpy destroys a half-built node on shutdown.
        self._slot: LatestFrameSlot = LatestFrameSlot()
        self._worker: threading.Thread | None = None
        self._builder: threading.Thread | None = None
        # The tracker and the requests for a new estimator, shared by the executor (parameter
        # callbacks), the builder and the worker; held only to read, bump or swap, never to build.
        self._state = threading.Condition()
        self._tracker: Tracker | None = None
        self._requested = 1  # bumped by each change of a parameter the estimator depends on
        self._attempts = 0  # builds finished, whether or not they succeeded
        self._unavailable = "the estimator is not built yet"  # why there is no tracker
        self._closing = False
        self._last_warning: dict[str, float] = {}
        self._declare_parameters()
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._parameters_changed)

        self._camera_infos: dict[str, CameraInfo] = {}
        self._pose_publishers: dict[str, Publisher] = {}
        self._pose_publishers_lock = threading.Lock()
        self._shown: set[str] = set()
        self._durations: deque[float] = deque(maxlen=30)
        self._last_done = time.monotonic()
        self.frames_processed = 0
        self._found_last = 0
        self._tracked_last = 0

        qos = (
            qos_profile_sensor_data if self._param("qos") == "sensor_data" else QoSProfile(depth=5)
        )
        if self._param("compressed"):
            # image_transport's name for the compressed stream of `image`, taken after remapping:
            # `-r image:=/camera/color/image_raw` moves it to `/camera/color/image_raw/compressed`.
            topic = f"{self.resolve_topic_name('image')}/compressed"
            self.create_subscription(CompressedImage, topic, self._slot.put, qos)
        else:
            self.create_subscription(Image, "image", self._slot.put, qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos)
        self._update_pose_publishers()
        self._markers_pub = self.create_publisher(MarkerArray, "object_markers", 10)
        self._debug_pub = self.create_publisher(Image, "debug_image", 1)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self._builder = threading.Thread(
            target=self._keep_estimator_current, name="ockd_build", daemon=True
        )
        self._builder.start()
        self._worker = threading.Thread(target=self._run, name="ockd_inference", daemon=True)
        self._worker.start()

    # --- parameters ---------------------------------------------------------------------------

    def _declare_parameters(self) -> None:
        if reasons := declare_parameters(self):
            raise InvalidParameterError("; ".join(reasons))

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _validate_parameters(self, parameters) -> SetParametersResult:
        current = {parameter.name: self._param(parameter.name) for parameter in PARAMETERS}
        reasons = refusals(current, {p.name: p.value for p in parameters})
        return SetParametersResult(successful=not reasons, reason="; ".join(reasons))

    def _parameters_changed(self, parameters) -> None:
        """Runs on the executor thread: it only bumps a request or swaps small objects, so that
        parameter services never wait for an estimator to be built."""
        declared = [PARAMETERS_BY_NAME[p.name] for p in parameters if p.name in PARAMETERS_BY_NAME]
        affected = {parameter.affects for parameter in declared}
        with self._state:
            if Affects.ESTIMATOR in affected:
                self._requested += 1  # the builder thread makes the new estimator
                self._state.notify_all()
            if self._tracker is not None and Affects.TRACKER in affected:
                self._tracker = Tracker(self._tracker.estimator, self._tracking_config())
            elif self._tracker is not None and Affects.FILTER in affected:
                self._tracker.filter = PoseFilter(self._pose_filter_config())
        if any(parameter.name == "objects" for parameter in declared):
            self._update_pose_publishers()

    def _update_pose_publishers(self) -> None:
        """One pose publisher per configured object, made as soon as the object is configured
        and not at its first detection: a subscriber that connects meanwhile gets every pose."""
        names = object_names(self._param("objects"))
        with self._pose_publishers_lock:
            for name in set(self._pose_publishers) - set(names):
                self.destroy_publisher(self._pose_publishers.pop(name))
            for name in names:
                if name not in self._pose_publishers:
                    self._pose_publishers[name] = self.create_publisher(
                        PoseStamped, pose_topic(name), 10
                    )

    def _current_tracker(self) -> Tracker:
        with self._state:
            if self._tracker is None:
                raise FrameSkipError(self._unavailable)
            return self._tracker

    # --- the estimator, built on its own thread -----------------------------------------------

    def _keep_estimator_current(self) -> None:
        """The builder thread: builds an estimator for the parameters whenever they change and
        swaps it in. A build takes seconds (minutes when template banks must be rendered), so it
        holds no lock; a build overtaken by a newer change is dropped for the newer one."""
        built: EstimatorRecipe | None = None
        handled = 0
        while (request := self._next_request(handled)) is not None:
            handled, recipe = request
            if recipe == built:  # set to the values it has: nothing to build
                continue
            try:
                estimator = self._build_estimator(recipe)
            except Exception as error:  # the node stays up; the next parameter change retries
                self._build_failed(error)
                continue
            with self._state:
                self._attempts += 1
                if recipe == self._estimator_recipe():  # else changed meanwhile: build anew
                    self._tracker = Tracker(estimator, self._tracking_config())
                    built = recipe
                self._state.notify_all()

    def _next_request(self, handled: int) -> tuple[int, EstimatorRecipe] | None:
        """Waits for a request newer than `handled`: its number and the recipe to build then;
        None when the node closes."""
        with self._state:
            self._state.wait_for(lambda: self._closing or self._requested != handled)
            return None if self._closing else (self._requested, self._estimator_recipe())

    def _build_failed(self, error: Exception) -> None:
        reason = f"cannot build the estimator: {type(error).__name__}: {error}"
        with self._state:
            self._attempts += 1
            if self._tracker is None:
                self._unavailable = reason
            self._state.notify_all()
            keeping = self._tracker is not None
        self.get_logger().error(
            f"{reason}; "
            + ("still using the previous one" if keeping else "frames are skipped")
            + " until a parameter changes"
        )

    def _estimator_recipe(self) -> EstimatorRecipe:
        return EstimatorRecipe(
            tuple(self._param("objects")), self._param("mesh_units"), estimator_settings(self)
        )

    def _tracking_config(self) -> TrackingConfig:
        return TrackingConfig(
            enabled=self._param("tracking"),
            zoom=self._param("tracking_zoom"),
            full_search_frames=self._param("full_search_frames"),
            full_search_seconds=float(self._param("full_search_seconds")),
            filter=self._pose_filter_config(),
        )

    def _pose_filter_config(self) -> PoseFilterConfig:
        return PoseFilterConfig(
            enabled=self._param("pose_filter"), weight=float(self._param("pose_filter_weight"))
        )

    def _build_estimator(self, recipe: EstimatorRecipe) -> Estimator:
        start = time.perf_counter()
        conf = estimator_config(recipe.settings)
        objects = [
            load_object(resolve_object(entry, recipe.mesh_units)) for entry in recipe.objects
        ]
        self.get_logger().info(
            f"loading {conf.backend} template banks of {len(objects)} objects (built once, then "
            "cached)"
        )
        self.get_logger().debug(f"estimator config: {conf!r}")
        estimator = Estimator(conf, objects)
        warm_up = estimator.warm_up(self._expected_image_size())
        changed = changed_settings(recipe.settings)
        self.get_logger().info(
            f"ready in {time.perf_counter() - start:.1f} s (warm-up {warm_up:.1f} s): "
            f"{', '.join(estimator.objects)}"
            + (f" (built: {', '.join(estimator.built)})" if estimator.built else "")
            + (f"; settings: {_listed(changed)}" if changed else "")
        )
        return estimator

    def _expected_image_size(self) -> tuple[int, int]:
        """(width, height) of the images inference will see: the size in the CameraInfo of the
        camera frame seen last, resized as `inference_width` asks; VGA before any came."""
        infos = [info for info in list(self._camera_infos.values()) if info.width and info.height]
        if not infos:
            return DEFAULT_IMAGE_SIZE
        return self._inference_size(infos[-1].width, infos[-1].height)

    def _inference_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) that an image of this size is resized to for inference: at most
        `inference_width` wide, aspect kept."""
        limit = self._param("inference_width")
        if not limit or width <= limit:
            return width, height
        return limit, max(1, round(height * limit / width))

    # --- input --------------------------------------------------------------------------------

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_infos[msg.header.frame_id] = msg

    def _run(self) -> None:
        with self._state:  # the first frame is the newest one once the estimator is ready
            self._state.wait_for(lambda: self._closing or self._attempts > 0)
        while (msg := self._slot.take()) is not None:
            try:
                self._process(msg)
            except (FrameSkipError, ImageDecodeError, ValueError) as error:
                self._warn_throttled(f"skipping frame: {error}")
            except Exception as error:  # the node must outlive any single bad frame
                self._warn_throttled(f"frame failed: {type(error).__name__}: {error}")

    def _warn_throttled(self, message: str) -> None:
        """Warn once per WARN_PERIOD per distinct message: a bad stream repeats the same one."""
        now = time.monotonic()
        if now - self._last_warning.get(message, -WARN_PERIOD) >= WARN_PERIOD:
            self._last_warning[message] = now
            self.get_logger().warning(message)

    def _intrinsics_for(self, header: Header, size: tuple[int, int]) -> CameraIntrinsics:
        info = self._camera_infos.get(header.frame_id)
        if info is None:
            known = sorted(self._camera_infos) or "none yet"
            raise FrameSkipError(
                f"no CameraInfo with frame_id {header.frame_id!r} on "
                f"{self.resolve_topic_name('camera_info')} (received: {known})"
            )
        intrinsics = camera_info_to_intrinsics(info, rectified=self._param("rectified"))
        # the evaluators' rule too: a resized image of the same aspect scales K, another is skipped
        return intrinsics.for_image(size)

    # --- processing ---------------------------------------------------------------------------

    def _process(self, msg) -> None:
        start = time.perf_counter()
        if isinstance(msg, CompressedImage):
            rgb = compressed_message_to_rgb(msg)
        else:
            rgb = image_message_to_rgb(msg)
        intrinsics = self._intrinsics_for(msg.header, (rgb.shape[1], rgb.shape[0]))
        rgb, intrinsics = self._resize_for_inference(rgb, intrinsics)
        tracker = self._current_tracker()
        estimator = tracker.estimator
        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        poses = tracker.track(rgb, intrinsics.K, intrinsics.distortion, stamp=stamp)
        self._publish(msg.header, poses, rgb, intrinsics, estimator, tracker.last_timing)
        elapsed = time.perf_counter() - start
        self._durations.append(elapsed)
        self._last_done = time.monotonic()
        self.frames_processed += 1
        self._found_last = len(poses)
        self._tracked_last = sum(mode == TRACKED for mode in tracker.last_mode.values())
        self.get_logger().debug(
            f"{len(poses)} of {len(estimator.objects)} objects ({self._tracked_last} tracked) in "
            f"{1000 * elapsed:.0f} ms (extraction {1000 * tracker.last_timing.extract:.0f} ms), "
            f"{self._slot.dropped} frames dropped so far"
        )

    def _resize_for_inference(self, rgb, intrinsics: CameraIntrinsics):
        size = self._inference_size(rgb.shape[1], rgb.shape[0])
        if size == (rgb.shape[1], rgb.shape[0]):
            return rgb, intrinsics
        resized = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        return resized, intrinsics.scaled(size)

    def _publish(
        self, header, poses: list[ObjectPose], rgb, intrinsics, estimator, timing: EstimateTiming
    ) -> None:
        with self._pose_publishers_lock:
            for pose in poses:
                # None: the object left `objects` while this frame was being processed
                if (publisher := self._pose_publishers.get(pose.name)) is not None:
                    publisher.publish(pose_stamped(pose, header))
        found = {pose.name for pose in poses}
        colors = {name: object_color(i) for i, name in enumerate(estimator.objects)}
        self._markers_pub.publish(
            object_markers(
                poses, header, intrinsics.K, estimator.objects, colors, self._shown - found
            )
        )
        self._shown = found
        if self._param("publish_debug_image") or self._debug_pub.get_subscription_count() > 0:
            overlay = self._overlay(rgb, poses, intrinsics.K, estimator, colors, timing)
            self._debug_pub.publish(rgb_to_image_msg(overlay, header))

    def _overlay(self, rgb, poses: list[ObjectPose], K, estimator: Estimator, colors, timing):
        canvas = rgb.copy()
        for pose in poses:
            bounds = estimator.objects[pose.name].mesh.bounds
            label = f"{pose.name} {pose.score:.2f} ({pose.inliers})"
            draw_pose(canvas, K, pose.matrix, bounds, colors[pose.name], label, pose.keypoints)
        return caption(canvas, f"{len(poses)} found, {1000 * timing.total:.0f} ms")

    def _publish_diagnostics(self) -> None:
        idle = time.monotonic() - self._last_done
        ok = self.frames_processed > 0 and idle < STALE_AFTER
        level = DiagnosticStatus.OK if ok else DiagnosticStatus.WARN
        message = "processing" if ok else f"no frame processed for {idle:.0f} s"
        mean = sum(self._durations) / len(self._durations) if self._durations else 0.0
        header = Header(stamp=self.get_clock().now().to_msg())
        values = {
            "frames_processed": self.frames_processed,
            "frames_dropped": self._slot.dropped,
            "mean_processing_ms": f"{1000 * mean:.1f}",
            "objects_found_last_frame": self._found_last,
            "objects_tracked_last_frame": self._tracked_last,
            "camera_info_frames": ",".join(sorted(self._camera_infos)),
        }
        self._diagnostics_pub.publish(
            diagnostics(header, f"{self.get_name()}: pose estimation", level, message, values)
        )

    def destroy_node(self) -> None:
        with self._state:
            self._closing = True
            self._state.notify_all()
        self._slot.close()
        for thread in (self._worker, self._builder):
            if thread is not None:  # a build under way is not waited for to its end
                thread.join(timeout=5.0)
        super().destroy_node()


def _listed(settings: dict) -> str:
    return ", ".join(f"{name}={value}" for name, value in settings.items())


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
