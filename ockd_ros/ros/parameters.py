"""The node's parameters: defaults, descriptions and validation in one table.

Every parameter is declared with its description; a value that fails its check is refused with
the reason, both from the YAML file at start and from `ros2 param set` at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ockd_ros.features import BACKENDS
from ockd_ros.geometry import UNIT_SCALE
from ockd_ros.meshes import HOPE_OBJECTS, MESH_SUFFIXES

QOS_CHOICES = ("sensor_data", "reliable")


@dataclass(frozen=True)
class NodeParameter:
    name: str
    default: Any
    description: str
    check: Callable[[Any], str | None]  # returns the reason a value is invalid, or None
    rebuilds: bool = True  # a change rebuilds the estimator (template banks come from the cache)


def _one_of(choices) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {list(choices)}"


def _positive(value) -> str | None:
    return None if value > 0 else "must be positive"


def _non_negative(value) -> str | None:
    return None if value >= 0 else "must be ≥ 0"


def _at_least(minimum) -> Callable[[Any], str | None]:
    return lambda value: None if value >= minimum else f"must be ≥ {minimum}"


def _zero_or_at_least(minimum) -> Callable[[Any], str | None]:
    return lambda value: None if value == 0 or value >= minimum else f"must be 0 or ≥ {minimum}"


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
    if len(set(value)) != len(value):
        return "lists an object twice"
    return None


def _anything(_value) -> str | None:
    return None


PARAMETERS = (
    NodeParameter(
        "objects", list(HOPE_OBJECTS), "objects to find: default object names or mesh file "
        "paths (.ply/.obj, in mesh_units)", _objects,
    ),
    NodeParameter("mesh_units", "mm", "units of mesh files given by path", _one_of(UNIT_SCALE)),
    NodeParameter(
        "backend", "ockd", "feature backend: ockd (the network) or sift", _one_of(BACKENDS)
    ),
    NodeParameter(
        "checkpoint", "", "network checkpoint file; empty for the shipped default", _checkpoint
    ),
    NodeParameter("device", "auto", "torch device: auto, cpu, cuda, cuda:N", _device),
    NodeParameter("templates_per_object", 96, "template views rendered per object", _positive),
    NodeParameter(
        "grid_stride", 4, "ockd keypoints on a grid every N pixels, as pose matching needs; "
        "0: detector maxima (r_thr, max_keypoints)", _non_negative,
    ),
    NodeParameter(
        "r_thr", 1.5, "keypoint reliability threshold (ockd, grid_stride 0)", _non_negative
    ),
    NodeParameter(
        "max_keypoints", 1024, "keypoints kept per image, strongest first (ockd, grid_stride 0)",
        _positive,
    ),
    NodeParameter(
        "min_inliers", 0, "PnP inliers needed to report a pose; 0: the backend's default "
        "(ockd 40, sift 12)", _zero_or_at_least(4),
    ),
    NodeParameter(
        "inference_width", 0, "resize wider images to this width before inference (intrinsics "
        "follow); 0 keeps the camera resolution", _non_negative,
    ),
    NodeParameter(
        "rectified", False, "images are rectified: use CameraInfo P and no distortion (else K "
        "and D)", _anything, rebuilds=False,
    ),
    NodeParameter(
        "qos", "sensor_data", "QoS of the camera subscriptions: sensor_data (best effort) or "
        "reliable; read at start", _one_of(QOS_CHOICES), rebuilds=False,
    ),
    NodeParameter(
        "compressed", False, "subscribe to sensor_msgs/CompressedImage on '<image>/compressed'; "
        "read at start", _anything, rebuilds=False,
    ),
    NodeParameter(
        "publish_debug_image", False, "always publish the debug overlay (otherwise only while "
        "someone subscribes)", _anything, rebuilds=False,
    ),
)  # fmt: skip
PARAMETERS_BY_NAME = {parameter.name: parameter for parameter in PARAMETERS}


def validate(name: str, value: Any) -> str | None:
    """The reason `value` is invalid for parameter `name`, or None if it is valid."""
    parameter = PARAMETERS_BY_NAME.get(name)
    if parameter is None:
        return None  # parameters declared by rclpy itself (use_sim_time, ...)
    numeric = isinstance(parameter.default, float) and type(value) is int
    if type(value) is not type(parameter.default) and not numeric:
        expected = type(parameter.default).__name__
        return f"{name} expects a {expected}, got {type(value).__name__} {value!r}"
    reason = parameter.check(value)
    return None if reason is None else f"{name}={value!r} {reason}"
