"""The node's parameters: defaults, descriptions and validation in one table.

Every parameter is declared with a descriptor: its description, its range where it has one
(rclpy enforces it), and read-only for what is only read at start. A value that fails is refused
with the reason, both from the YAML file at start and from `ros2 param set` at run time.

The estimator's parameters are the flat settings of `ockd_ros.settings` (the CLIs' `--config`
keys), taken from its table as they are: a row added there is a node parameter. A change of
any of them is checked against the whole `EstimatorConfig` it gives before it is accepted.
"""

from __future__ import annotations

import array
import enum
import math
from collections.abc import Callable, Mapping
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

from ockd_ros.geometry import UNIT_SCALE
from ockd_ros.meshes import HOPE_OBJECTS, MESH_SUFFIXES, resolve_object
from ockd_ros.settings import SETTINGS, SETTINGS_BY_NAME, Setting, one_of, settings_problem

QOS_CHOICES = ("sensor_data", "reliable")
INT_MAX = 2**31 - 1  # an integer range needs both ends; these mean "no limit"
INT_MIN = -(2**31)


class Affects(enum.Enum):
    """What a change of a parameter at run time renews."""

    ESTIMATOR = "estimator"  # a new estimator, built off the executor thread, then swapped in
    TRACKER = "tracker"  # a new tracker around the same estimator (priors forgotten)
    FILTER = "filter"  # the pose filter restarts
    NOTHING = "nothing"  # read where it is used


@dataclass(frozen=True)
class NodeParameter:
    name: str
    default: Any
    description: str
    check: Callable[[Any], str | None] | None = None  # the reason a value is invalid, or None
    minimum: float | None = None  # the range rclpy enforces (None: open at that end)
    maximum: float | None = None
    read_only: bool = False  # read once at start: a change at run time is refused
    affects: Affects = Affects.ESTIMATOR

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.minimum is None and self.maximum is None:
            return descriptor
        if isinstance(self.default, int):
            low = INT_MIN if self.minimum is None else int(self.minimum)
            high = INT_MAX if self.maximum is None else int(self.maximum)
            descriptor.integer_range = [IntegerRange(from_value=low, to_value=high)]
        else:
            low = -math.inf if self.minimum is None else float(self.minimum)
            high = math.inf if self.maximum is None else float(self.maximum)
            descriptor.floating_point_range = [FloatingPointRange(from_value=low, to_value=high)]
        return descriptor

    @classmethod
    def of_setting(cls, setting: Setting) -> NodeParameter:
        """The node parameter of an estimator setting."""
        return cls(
            setting.name,
            setting.default,
            setting.describe(),
            setting.reason,
            setting.minimum,
            setting.maximum,
        )


def _weight(value: float) -> str | None:
    return None if 0.0 < value <= 1.0 else "must be in (0, 1]"


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


_OBJECTS = (
    NodeParameter(
        "objects", list(HOPE_OBJECTS), "objects to find: default object names or mesh file "
        "paths (.ply/.obj, in mesh_units)", _objects,
    ),
    NodeParameter("mesh_units", "mm", "units of mesh files given by path", one_of(UNIT_SCALE)),
)  # fmt: skip
_STREAM = (
    NodeParameter(
        "inference_width", 0, "resize wider images to this width before inference (intrinsics "
        "follow); 0 keeps the camera resolution", minimum=0, affects=Affects.NOTHING,
    ),
    NodeParameter(
        "rectified", False, "images are rectified: use CameraInfo P and no distortion (else K "
        "and D)", affects=Affects.NOTHING,
    ),
    NodeParameter(
        "qos", "sensor_data", "QoS of the camera subscriptions: sensor_data (best effort) or "
        "reliable; read-only (set at start)", one_of(QOS_CHOICES), read_only=True,
        affects=Affects.NOTHING,
    ),
    NodeParameter(
        "compressed", False, "subscribe to sensor_msgs/CompressedImage on '<image>/compressed'; "
        "read-only (set at start)", read_only=True, affects=Affects.NOTHING,
    ),
    NodeParameter(
        "tracking", True, "look for each object around its last pose first (window and nearby "
        "templates), in the whole frame when it is lost", affects=Affects.TRACKER,
    ),
    NodeParameter(
        "tracking_zoom", False, "with tracking: search each object's box resized so that it "
        "shows at its templates' size (more accurate on small objects, slower)",
        affects=Affects.TRACKER,
    ),
    NodeParameter(
        "full_search_frames", 15, "with tracking: a full search of every object at least every "
        "N frames (0: only when an object is lost)", minimum=0, affects=Affects.TRACKER,
    ),
    NodeParameter(
        "full_search_seconds", 3.0, "with tracking: a full search at least every T seconds of "
        "image stamps (0: no time limit)", minimum=0.0, affects=Affects.TRACKER,
    ),
    NodeParameter(
        "pose_filter", False, "smooth the published poses (exponential average, restarted on a "
        "jump of 3 cm or 15°, so no lag)", affects=Affects.FILTER,
    ),
    NodeParameter(
        "pose_filter_weight", 0.5, "weight of the new measurement in the pose filter, (0, 1]",
        _weight, affects=Affects.FILTER,
    ),
    NodeParameter(
        "publish_debug_image", False, "always publish the debug overlay (otherwise only while "
        "someone subscribes)", affects=Affects.NOTHING,
    ),
)  # fmt: skip
PARAMETERS = (*_OBJECTS, *map(NodeParameter.of_setting, SETTINGS), *_STREAM)
PARAMETERS_BY_NAME = {parameter.name: parameter for parameter in PARAMETERS}


def validate(name: str, value: Any) -> str | None:
    """The reason `value` is invalid for parameter `name` beyond its descriptor's type and range
    (rclpy checks those), or None if it is valid."""
    parameter = PARAMETERS_BY_NAME.get(name)
    if parameter is None or parameter.check is None:
        return None  # rclpy's own parameters (use_sim_time, ...) and unchecked ones
    reason = parameter.check(value)
    return None if reason is None else f"{name}={value!r} {reason}"


def refusals(current: Mapping[str, Any], proposed: Mapping[str, Any]) -> list[str]:
    """Why the `proposed` values (parameter name → value) cannot replace the `current` ones:
    each value's own reason beyond its descriptor's type and range, else what the estimator's
    config refuses in the settings they give together."""
    proposed = {name: _plain(value) for name, value in proposed.items()}
    reasons = _value_reasons(proposed)
    changed = {name: value for name, value in proposed.items() if name in SETTINGS_BY_NAME}
    if reasons or not changed:
        return reasons
    settings = {name: (current | proposed)[name] for name in SETTINGS_BY_NAME}
    if reason := settings_problem(settings):
        given = ", ".join(f"{name}={value!r}" for name, value in changed.items())
        reasons.append(f"{given}: {reason}")
    return reasons


def _value_reasons(values: Mapping[str, Any]) -> list[str]:
    return [reason for name, value in values.items() if (reason := validate(name, value))]


def _plain(value: Any) -> Any:
    """A parameter value as Python gives it: rclpy hands arrays to callbacks as array.array."""
    return list(value) if isinstance(value, array.array) else value


def estimator_settings(node: Node) -> dict[str, Any]:
    """The node's current estimator settings (flat names of `ockd_ros.settings`)."""
    return {name: node.get_parameter(name).value for name in SETTINGS_BY_NAME}


def declare_parameters(node: Node) -> list[str]:
    """Declare every parameter on `node` with its descriptor, taking the values given at start
    (`--params-file`, `-p`); the reasons the given values are invalid, all of them at once.

    rclpy itself refuses a value of the wrong type or out of its range while declaring."""
    reasons, given = [], {}
    for parameter in PARAMETERS:
        try:
            declared = node.declare_parameter(
                parameter.name, parameter.default, parameter.descriptor()
            )
        except (InvalidParameterTypeException, InvalidParameterValueException) as error:
            reasons.append(str(error))
            continue
        given[parameter.name] = declared.value
    if reasons:  # the estimator's config as a whole needs every value
        return reasons + _value_reasons(given)
    return refusals({}, given)
