"""Build ROS messages from numpy results: images, poses, RViz markers, diagnostics.

Images, CameraInfo and poses take their fields from `ockd_ros.message_fields`, where the bag
tools take theirs.
"""

from __future__ import annotations

import array
from collections.abc import Iterable, Sequence

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseStamped
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from ockd_ros.geometry import backproject
from ockd_ros.meshes import ObjectMesh
from ockd_ros.message_fields import camera_info_fields, image_fields, pose_fields
from ockd_ros.pose.estimator import ObjectPose

# Marker ids inside each object's namespace.
KEYPOINTS, AXES, LABEL, MESH = range(4)
AXIS_COLORS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def rgb_to_image_msg(rgb: np.ndarray, header: Header) -> Image:
    """A sensor_msgs/Image (rgb8) of an H×W×3 uint8 array, stamped with `header`."""
    return _filled(Image(header=header), image_fields(rgb))


def pose_msg(R: np.ndarray, t: np.ndarray) -> Pose:
    """geometry_msgs/Pose of a rotation matrix and translation (metres)."""
    return _filled(Pose(), pose_fields(R, t))


def pose_stamped(pose: ObjectPose, header: Header) -> PoseStamped:
    """The object frame in the camera optical frame of `header`."""
    return PoseStamped(header=header, pose=pose_msg(pose.R, pose.t))


def camera_info_msg(K: np.ndarray, size: tuple[int, int], header: Header, D=None) -> CameraInfo:
    """A sensor_msgs/CameraInfo of pinhole K (3×3) for an image of `size` (width, height)."""
    return _filled(CameraInfo(header=header), camera_info_fields(K, size, D))


def _filled(msg, fields: dict):
    """`msg` with `fields` (nested dicts from `message_fields`) set. rclpy stores a sequence
    field as an array.array, which it takes without checking each element: an image's bytes
    go in at once."""
    types = msg.get_fields_and_field_types()
    for name, value in fields.items():
        if isinstance(value, dict):
            _filled(getattr(msg, name), value)
        elif isinstance(value, np.ndarray) and types[name].startswith("sequence<"):
            # numpy's type characters are the array module's: 'B' for uint8, 'd' for float64
            setattr(msg, name, array.array(value.dtype.char, value.tobytes()))
        else:
            setattr(msg, name, value)
    return msg


def object_markers(
    poses: Sequence[ObjectPose],
    header: Header,
    K: np.ndarray,
    meshes: dict[str, ObjectMesh],
    colors: dict[str, tuple[int, int, int]],
    gone: Iterable[str] = (),
) -> MarkerArray:
    """Markers per found object (keypoints, axes, label, mesh), and DELETEs for objects in `gone`.

    Keypoints are drawn where their viewing rays cross the object's depth: the estimator matches
    2D points, and this puts them on the object in RViz without a depth image.
    """
    array = MarkerArray()
    for pose in poses:
        color = ColorRGBA(**dict(zip("rgb", (c / 255 for c in colors[pose.name]), strict=True)))
        color.a = 1.0
        mesh = meshes[pose.name]
        array.markers += [
            _keypoint_marker(pose, header, K, color),
            _axes_marker(pose, header, 0.5 * float(np.min(mesh.mesh.extents))),
            _label_marker(pose, header, color, float(mesh.mesh.extents.max())),
        ]
        if mesh.path.is_file():
            array.markers.append(_mesh_marker(pose, header, mesh))
    for name in gone:
        for marker_id in (KEYPOINTS, AXES, LABEL, MESH):
            array.markers.append(Marker(header=header, ns=name, id=marker_id, action=Marker.DELETE))
    return array


def _marker(pose: ObjectPose, header: Header, marker_id: int, kind: int) -> Marker:
    marker = Marker(header=header, ns=pose.name, id=marker_id, type=kind, action=Marker.ADD)
    marker.pose.orientation.w = 1.0
    return marker


def _keypoint_marker(pose: ObjectPose, header, K: np.ndarray, color: ColorRGBA) -> Marker:
    marker = _marker(pose, header, KEYPOINTS, Marker.SPHERE_LIST)
    depth = np.full(len(pose.keypoints), float(pose.t[2]))
    points = backproject(K, np.asarray(pose.keypoints, float).reshape(-1, 2), depth)
    marker.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in points]
    marker.scale.x = marker.scale.y = marker.scale.z = 0.004
    marker.color = color
    return marker


def _axes_marker(pose: ObjectPose, header, length: float) -> Marker:
    marker = _marker(pose, header, AXES, Marker.LINE_LIST)
    marker.pose = pose_msg(pose.R, pose.t)
    for axis, (r, g, b) in enumerate(AXIS_COLORS):
        tip = np.zeros(3)
        tip[axis] = length
        marker.points += [Point(), Point(x=tip[0], y=tip[1], z=tip[2])]
        marker.colors += [ColorRGBA(r=r, g=g, b=b, a=1.0)] * 2
    marker.scale.x = 0.003
    return marker


def _label_marker(pose: ObjectPose, header, color: ColorRGBA, size: float) -> Marker:
    marker = _marker(pose, header, LABEL, Marker.TEXT_VIEW_FACING)
    marker.pose.position.x, marker.pose.position.y = float(pose.t[0]), float(pose.t[1])
    marker.pose.position.z = float(pose.t[2])
    marker.pose.position.y -= 0.6 * size  # above the object: −y is up in the optical frame
    marker.text = f"{pose.name} {pose.score:.2f}"
    marker.scale.z = 0.02
    marker.color = color
    return marker


def _mesh_marker(pose: ObjectPose, header, mesh: ObjectMesh) -> Marker:
    marker = _marker(pose, header, MESH, Marker.MESH_RESOURCE)
    marker.pose = pose_msg(pose.R, pose.t)
    marker.mesh_resource = mesh.path.resolve().as_uri()
    marker.mesh_use_embedded_materials = True
    # RViz loads the file in its own units; ObjectMesh knows the factor to metres.
    marker.scale.x = marker.scale.y = marker.scale.z = mesh.scale_to_metres
    marker.color = ColorRGBA(r=0.0, g=0.0, b=0.0, a=0.0)  # use the mesh's own materials
    return marker


def diagnostics(
    header: Header, name: str, level: bytes, message: str, values: dict
) -> DiagnosticArray:
    """A DiagnosticArray with one status carrying `values` as strings."""
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id="camera")
    status.values = [KeyValue(key=key, value=str(value)) for key, value in values.items()]
    return DiagnosticArray(header=header, status=[status])
