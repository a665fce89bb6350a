"""The one offscreen renderer: meshes at poses, a pinhole camera → RGB, depth, instance labels.

Template banks and synthetic training scenes both render through `Renderer`. It wraps pyrender on
OSMesa (CPU, the default where no GPU exists) or EGL (GPU). The OpenGL platform is chosen once per
process, before pyrender is first imported: `RenderConfig.platform`, else `$PYOPENGL_PLATFORM`, else
EGL when an NVIDIA device is present and OSMesa otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ockd_ros.geometry import check_intrinsics, look_at
from ockd_ros.meshes import ObjectMesh

# pyrender's camera looks down -z with y up; ours looks down +z with y down.
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class DirectionalLight:
    """A light shining along `direction` (camera optical frame), e.g. (0, 0, 1) from the camera."""

    direction: tuple[float, float, float] = (0.0, 0.0, 1.0)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    intensity: float = 3.0


@dataclass(frozen=True)
class Lighting:
    """Ambient term plus directional lights. The default is a head light: no dark template sides."""

    ambient: tuple[float, float, float] = (0.35, 0.35, 0.35)
    lights: tuple[DirectionalLight, ...] = (DirectionalLight(),)


@dataclass(frozen=True)
class RenderConfig:
    platform: str | None = None  # 'osmesa' | 'egl'; None: $PYOPENGL_PLATFORM, else auto
    znear: float = 0.01
    zfar: float = 20.0


@dataclass
class RenderedView:
    """One rendered frame.

    rgb: H×W×3 uint8. depth: H×W float32 metres along the optical axis, 0 where nothing is hit.
    labels: H×W int32, 0 for background and i + 1 where object i of the render call is visible.
    """

    rgb: np.ndarray
    depth: np.ndarray
    labels: np.ndarray = field(repr=False)

    def mask(self, index: int) -> np.ndarray:
        """H×W bool mask of the visible pixels of object `index`."""
        return self.labels == index + 1


def select_gl_platform(requested: str | None = None) -> str:
    """Choose the OpenGL platform and export it for PyOpenGL; returns the platform in effect."""
    current = os.environ.get("PYOPENGL_PLATFORM")
    if requested and current and requested != current and _gl_already_loaded():
        raise RuntimeError(
            f"OpenGL is already loaded with platform {current!r}; cannot switch to {requested!r} "
            "in the same process"
        )
    platform = requested or current or ("egl" if Path("/dev/nvidiactl").exists() else "osmesa")
    if platform not in ("osmesa", "egl"):
        raise ValueError(f"unknown render platform {platform!r}; expected 'osmesa' or 'egl'")
    os.environ["PYOPENGL_PLATFORM"] = platform
    return platform


def _gl_already_loaded() -> bool:
    import sys

    return "OpenGL.GL" in sys.modules


class Renderer:
    """Offscreen renderer keeping meshes on the GL side between calls.

    Objects stay in one pyrender scene and are shown or hidden per call, so a texture is uploaded
    once per object, not once per frame. Not thread-safe: use one renderer per thread.
    """

    def __init__(self, conf: RenderConfig | None = None):
        self.conf = conf or RenderConfig()
        self.platform = select_gl_platform(self.conf.platform)
        import pyrender  # after the platform is chosen

        if self.platform == "osmesa":
            _stable_osmesa_context_handle()
        self._pyrender = pyrender
        self._scene = pyrender.Scene(bg_color=np.zeros(4), ambient_light=np.zeros(3))
        self._camera_node = self._scene.add(
            pyrender.IntrinsicsCamera(1.0, 1.0, 0.0, 0.0, self.conf.znear, self.conf.zfar),
            pose=np.eye(4),
        )
        self._object_nodes: dict[tuple[int, int], object] = {}
        self._light_nodes: list[object] = []
        self._offscreen = None

    def render(
        self,
        objects: Sequence[ObjectMesh],
        poses: Sequence[np.ndarray],
        K: np.ndarray,
        size: tuple[int, int],
        lighting: Lighting | None = None,
        background: tuple[int, int, int] = (0, 0, 0),
    ) -> RenderedView:
        """Render `objects[i]` at `poses[i]` (T_cam_obj, 4×4, metres) with intrinsics K.

        size: (width, height) of the image in pixels; K may describe any image size.
        """
        if len(objects) != len(poses):
            raise ValueError(f"{len(objects)} objects but {len(poses)} poses")
        K = check_intrinsics(K)
        width, height = _check_size(size)
        nodes = self._show(objects, poses)
        self._set_camera(K)
        self._set_lighting(lighting or Lighting())
        self._scene.bg_color = np.append(np.asarray(background) / 255.0, 1.0)
        renderer = self._offscreen_renderer(width, height)
        rgb, depth = renderer.render(self._scene)
        labels = self._render_labels(renderer, nodes) if nodes else np.zeros_like(depth, np.int32)
        return RenderedView(np.ascontiguousarray(rgb[..., :3]), depth.astype(np.float32), labels)

    def close(self) -> None:
        """Free the GL context; the renderer cannot be used afterwards."""
        if self._offscreen is not None:
            self._offscreen.delete()
            self._offscreen = None

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _offscreen_renderer(self, width: int, height: int):
        if self._offscreen is None:
            self._offscreen = self._pyrender.OffscreenRenderer(width, height)
        self._offscreen.viewport_width, self._offscreen.viewport_height = width, height
        return self._offscreen

    def _show(self, objects: Sequence[ObjectMesh], poses: Sequence[np.ndarray]) -> list:
        """Pose the nodes of `objects`, hide every other node; returns the nodes in call order."""
        occurrences: dict[int, int] = {}
        shown = []
        for obj, pose in zip(objects, poses, strict=True):
            pose = np.asarray(pose, dtype=np.float64)
            if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
                raise ValueError(f"pose of {obj.name} must be a finite 4×4 matrix")
            index = occurrences.get(id(obj), 0)
            occurrences[id(obj)] = index + 1
            node = self._node_for(obj, index)
            self._scene.set_pose(node, OPENCV_TO_OPENGL @ pose)
            shown.append(node)
        shown_ids = {id(node) for node in shown}
        for node in self._object_nodes.values():
            node.mesh.is_visible = id(node) in shown_ids
        return shown

    def _node_for(self, obj: ObjectMesh, occurrence: int):
        key = (id(obj), occurrence)
        if key not in self._object_nodes:
            mesh = self._pyrender.Mesh.from_trimesh(obj.mesh, smooth=False)
            for primitive in mesh.primitives:
                if primitive.color_0 is not None:
                    primitive.color_0 = _linear_vertex_colours(primitive.color_0)
            # Keep the ObjectMesh alive with its node so id(obj) is never reused for another mesh.
            self._object_nodes[key] = self._scene.add(mesh, name=f"{obj.name}#{occurrence}")
            self._object_nodes[key].source = obj
        return self._object_nodes[key]

    def _set_camera(self, K: np.ndarray) -> None:
        camera = self._camera_node.camera
        # OpenCV puts the centre of pixel (0, 0) at coordinate 0, OpenGL at 0.5: shift the centre.
        camera.fx, camera.fy = K[0, 0], K[1, 1]
        camera.cx, camera.cy = K[0, 2] + 0.5, K[1, 2] + 0.5

    def _set_lighting(self, lighting: Lighting) -> None:
        for node in self._light_nodes:
            self._scene.remove_node(node)
        self._scene.ambient_light = np.asarray(lighting.ambient, dtype=np.float64)
        self._light_nodes = [
            self._scene.add(
                # pyrender reads integer colours as 0–255: always pass floats in [0, 1].
                self._pyrender.DirectionalLight(
                    color=np.asarray(light.color, dtype=np.float64), intensity=light.intensity
                ),
                pose=_light_pose(light.direction),
            )
            for light in lighting.lights
        ]

    def _render_labels(self, renderer, nodes: list) -> np.ndarray:
        # Label i + 1 is encoded in the red and green channels: up to 65535 instances per frame.
        seg_colors = {node: ((i + 1) % 256, (i + 1) // 256, 0) for i, node in enumerate(nodes)}
        seg, _ = renderer.render(
            self._scene, self._pyrender.RenderFlags.SEG, seg_node_map=seg_colors
        )
        return seg[..., 0].astype(np.int32) + 256 * seg[..., 1].astype(np.int32)


def _linear_vertex_colours(rgba: np.ndarray) -> np.ndarray:
    """n×4 float vertex colours from sRGB to linear RGB (alpha unchanged).

    pyrender's shader multiplies the lit colour by the vertex colour and then encodes the result
    as sRGB, but unlike textures it never decodes the vertex colour first: stored sRGB (as in
    BOP's PLY scans) came out washed out, 1.5-2.5x too bright and greyish on LM-O objects.
    """
    linear = np.array(rgba, dtype=np.float32)
    rgb = linear[:, :3]
    linear[:, :3] = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return linear


def _stable_osmesa_context_handle() -> None:
    """Stop a leak of ~12 MB per render under OSMesa (and a shader recompile per render).

    PyOpenGL and pyrender key per-context caches by the current-context handle, which OSMesa
    hands out as a new pointer object on every call, so no cache entry is ever found again.
    Returning the handle as a plain address makes the keys stable. Idempotent.
    """
    import ctypes

    from OpenGL import platform

    platform.PLATFORM.GetCurrentContext.restype = ctypes.c_void_p


def _light_pose(direction_cam: Sequence[float]) -> np.ndarray:
    """Pose of a pyrender directional light (it shines along its -z) in the OpenGL camera frame."""
    d = OPENCV_TO_OPENGL[:3, :3] @ np.asarray(direction_cam, dtype=np.float64)
    if np.linalg.norm(d) < 1e-9:
        raise ValueError("light direction must be non-zero")
    # A light at the origin looking against its direction has its -z along it; the roll about
    # that axis, which look_at picks, does not change a directional light.
    return look_at(np.zeros(3), -d)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    width, height = (int(v) for v in size)
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {size}")
    return width, height
