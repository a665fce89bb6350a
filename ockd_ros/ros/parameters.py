"""The node's parameters: defaults, descriptions and validation in one table.

Every parameter is declared with a descriptor: its description, its range where a range says
it all (rclpy enforces it), and read-only for what is only read at start. A value that fails is
refused with the reason, both from the YAML file at start and from `ros2 param set` at run time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    InvalidTopicNameException,
)
from rclpy.node import Node
from rclpy.validate_topic_name import validate_topic_name

from ockd_ros.features import BACKENDS
from ockd_ros.geometry import UNIT_SCALE
from ockd_ros.meshes import HOPE_OBJECTS, MESH_SUFFIXES, resolve_object

QOS_CHOICES = ("sensor_data", "reliable")
INT_MAX = 2**31 - 1  # an integer range needs an upper end; this one means "no limit"


@dataclass(frozen=True)
class NodeParameter:
    name: str
    default: Any
    description: str
    check: Callable[[Any], str | None] | None = None  # the reason a value is invalid, or None
    at_least: float | None = None  # lower end of an rclpy range (no upper end)
    read_only: bool = False  # read once at start: a change at run time is refused
    rebuilds: bool = True  # a change rebuilds the estimator (template banks come from the cache)

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.at_least is not None and isinstance(self.default, int):
            descriptor.integer_range = [IntegerRange(from_value=self.at_least, to_value=INT_MAX)]
        elif self.at_least is not None:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=self.at_least, to_value=math.inf)
            ]
        return descriptor


def _one_of(choices) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {list(choices)}"


def _zero_or_at_least(minimum) -> Callable[[Any], str | None]:
    return lambda value: None if value == 0 or value >= minimum else f"must be 0 or ≥ {minimum}"


def _weight(value: float) -> str | None:
    return None if 0.0 < value <= 1.0 else "must be in (0, 1]"


def _device(value: str) -> str | None:
    from ockd_ros.device import resolve_device

    try:
        resolve_device(value)
    except ValueError as error:
        return str(error)
    return None


def _checkpoint(value: str) -> str | None:
    return None if not value or Path(value).is_file() else f"no such file: {value}"


def _objects(value: list[str]) -> str | None:
    if not value:
        return "must name at least one object"
    for entry in value:
        is_mesh = Path(entry).suffix.lower() in MESH_SUFFIXES
        if is_mesh and not Path(entry).is_file():
            return f"mesh file not found: {entry}"
        if not is_mesh and entry not in HOPE_OBJECTS:
            return f"{entry!r} is neither a mesh file nor a default object {list(HOPE_OBJECTS)}"
    names = object_names(value)
    if len(set(names)) != len(names):  # two mesh files of one stem would share a pose topic
        return f"names an object twice: {names}"
    for name in names:
        try:
            validate_topic_name(pose_topic(name))
        except InvalidTopicNameException as error:
            return f"gives the object {name!r}, whose pose topic is not a ROS name: {error}"
    return None


def object_names(entries: list[str]) -> list[str]:
    """The names poses are published under: a default object's name, a mesh file's stem."""
    return [resolve_object(entry).name for entry in entries]


def pose_topic(name: str) -> str:
    return f"object_poses/{name}"


PARAMETERS = (
    NodeParameter(
        "objects", list(HOPE_OBJECTS), "objects to find: default object names or mesh file "
        "paths (.ply/.obj, in mesh_units)", _objects,
    ),
    NodeParameter("mesh_units", "mm", "units of mesh files given by path", _one_of(UNIT_SCALE)),
    NodeParameter(
        "backend", "ockd", "feature backend: ockd (the network), sift (the OpenCV baseline) or "
        "xfeat (optional extra)", _one_of(BACKENDS),
    ),
    NodeParameter(
        "checkpoint", "", "network checkpoint file; empty for the shipped default", _checkpoint
    ),
    NodeParameter("device", "auto", "torch device: auto, cpu, cuda, cuda:N", _device),
    NodeParameter(
        "templates_per_object", 96, "template views rendered per object", at_least=1
    ),
    NodeParameter(
        "grid_stride", 4, "ockd keypoints on a grid every N pixels, as pose matching needs; "
        "0: detector maxima (r_thr, max_keypoints)", at_least=0,
    ),
    NodeParameter(
        "r_thr", 1.5, "keypoint reliability threshold (ockd, grid_stride 0)", at_least=0.0
    ),
    NodeParameter(
        "max_keypoints", 1024, "keypoints kept per image, strongest first (ockd, grid_stride 0)",
        at_least=1,
    ),
    NodeParameter(
        "min_inliers", 0, "PnP inliers needed to report a pose; 0: the backend's default "
        "(ockd 40, sift 12)", _zero_or_at_least(4),
    ),
    NodeParameter(
        "inference_width", 0, "resize wider images to this width before inference (intrinsics "
        "follow); 0 keeps the camera resolution", at_least=0,
    ),
    NodeParameter(
        "rectified", False, "images are rectified: use CameraInfo P and no distortion (else K "
        "and D)", rebuilds=False,
    ),
    NodeParameter(
        "qos", "sensor_data", "QoS of the camera subscriptions: sensor_data (best effort) or "
        "reliable; read-only (set at start)", _one_of(QOS_CHOICES), read_only=True,
        rebuilds=False,
    ),
    NodeParameter(
        "compressed", False, "subscribe to sensor_msgs/CompressedImage on '<image>/compressed'; "
        "read-only (set at start)", read_only=True, rebuilds=False,
    ),
    NodeParameter(
        "tracking", True, "look for each object around its last pose first (window and nearby "
        "templates), in the whole frame when it is lost",
    ),
    NodeParameter(
        "tracking_zoom", False, "with tracking: search each object's box resized so that it "
        "shows at its templates' size (more accurate on small objects, slower)",
    ),
    NodeParameter(
        "full_search_frames", 15, "with tracking: a full search of every object at least every "
        "N frames (0: only when an object is lost)", at_least=0,
    ),
    NodeParameter(
        "full_search_seconds", 3.0, "with tracking: a full search at least every T seconds of "
        "image stamps (0: no time limit)", at_least=0.0,
    ),
    NodeParameter(
        "pose_filter", False, "smooth the published poses (exponential average, restarted on a "
        "jump of 3 cm or 15°, so no lag)", rebuilds=False,
    ),
    NodeParameter(
        "pose_filter_weight", 0.5, "weight of the new measurement in the pose filter, (0, 1]",
        _weight, rebuilds=False,
    ),
    NodeParameter(
        "publish_debug_image", False, "always publish the debug overlay (otherwise only while "
        "someone subscribes)", rebuilds=False,
    ),
)  # fmt: skip
PARAMETERS_BY_NAME = {parameter.name: parameter for parameter in PARAMETERS}


def validate(name: str, value: Any) -> str | None:
    """The reason `value` is invalid for parameter `name` beyond its descriptor's type and range
    (rclpy checks those), or None if it is valid."""
    parameter = PARAMETERS_BY_NAME.get(name)
    if parameter is None or parameter.check is None:
        return None  # rclpy's own parameters (use_sim_time, ...) and unchecked ones
    reason = parameter.check(value)
    return None if reason is None else f"{name}={value!r} {reason}"


def declare_parameters(node: Node) -> list[str]:
    """Declare every parameter on `node` with its descriptor, taking the values given at start
    (`--params-file`, `-p`); the reasons the given values are invalid, all of them at once.

    rclpy itself refuses a value of the wrong type or out of its range while declaring."""
    reasons = []
    for parameter in PARAMETERS:
        try:
            declared = node.declare_parameter(
                parameter.name, parameter.default, parameter.descriptor()
            )
        except (InvalidParameterTypeException, InvalidParameterValueException) as error:
            reasons.append(str(error))
            continue
        if reason := validate(parameter.name, declared.value):
            reasons.append(reason)
    return reasons
