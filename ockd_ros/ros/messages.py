"""Build ROS messages from numpy results: images, poses, RViz markers, diagnostics."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseStamped
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from ockd_ros.geometry import backproject
from ockd_ros.meshes import ObjectMesh
from ockd_ros.pose.estimator import ObjectPose

# Marker ids inside each object's namespace.
KEYPOINTS, AXES, LABEL, MESH = range(4)
AXIS_COLORS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def rgb_to_image_msg(rgb: np.ndarray, header: Header) -> Image:
    """A sensor_msgs/Image (rgb8) of an H×W×3 uint8 array, stamped with `header`."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 uint8 image, got {rgb.dtype} {rgb.shape}")
    msg = Image()
    msg.header = header
    msg.height, msg.width = rgb.shape[:2]
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = rgb.shape[1] * 3
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


def pose_msg(R: np.ndarray, t: np.ndarray) -> Pose:
    """geometry_msgs/Pose of a rotation matrix and translation (metres)."""
    x, y, z, w = Rotation.from_matrix(R).as_quat()
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in t)
    pose.orientation.x, pose.orientation.y = float(x), float(y)
    pose.orientation.z, pose.orientation.w = float(z), float(w)
    return pose


def pose_stamped(pose: ObjectPose, header: Header) -> PoseStamped:
    """The object frame in the camera optical frame of `header`."""
    msg = PoseStamped()
    msg.header = header
    msg.pose = pose_msg(pose.R, pose.t)
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


def camera_info_msg(K: np.ndarray, size: tuple[int, int], header: Header, D=None) -> CameraInfo:
    """A sensor_msgs/CameraInfo of pinhole K (3×3) for an image of `size` (width, height)."""
    msg = CameraInfo(header=header, width=int(size[0]), height=int(size[1]))
    msg.distortion_model = "plumb_bob"
    msg.d = [float(v) for v in (np.zeros(5) if D is None or len(D) == 0 else D)]
    msg.k = np.asarray(K, dtype=np.float64).reshape(9)
    msg.r = np.eye(3).reshape(9)
    msg.p = np.hstack([np.asarray(K, dtype=np.float64), np.zeros((3, 1))]).reshape(12)
    return msg
