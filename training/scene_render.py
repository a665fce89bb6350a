"""Rendering and writing a drawn scene: each frame's render, with photos composited on the sky,
floor and table (with the objects' shadows) and colour jitter on the rest; a clean render of each
visible object alone (I0); the frames and the scene's record written through `SceneWriter`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ockd_ros.geometry import invert_pose, project, transform_points
from ockd_ros.render import Lighting, RenderedView, Renderer
from ockd_ros.training.randomization import (
    TextureBank,
    apply_jitter,
    plane_view,
    shadow_mask,
    sky_view,
)
from ockd_ros.training.scene_config import SceneConfig
from ockd_ros.training.scene_format import SceneWriter, pose_to_json, scene_name
from ockd_ros.training.scene_layout import (
    FLOOR_ID,
    TABLE_GREY,
    TABLE_ID,
    RejectedSceneError,
    SceneLayout,
)

LOG = logging.getLogger(__name__)


class SceneRenderer:
    """Renders the frames of drawn scenes with `renderer` and writes them under a folder."""

    def __init__(self, conf: SceneConfig, renderer: Renderer, textures: TextureBank):
        self.conf = conf
        self.renderer = renderer
        self.textures = textures

    def render_and_write(self, index: int, layout: SceneLayout, out_dir: Path) -> Path:
        """Render every frame of `layout` and publish it as scene `index` under `out_dir`.

        Raises `RejectedSceneError` (and publishes nothing) when a frame shows no object.
        """
        conf = self.conf
        width, height = conf.size
        min_pixels = max(1, round(conf.min_visible * width * height))
        meshes = [asset.mesh for asset in layout.assets]
        frames_meta = []
        shading = self._plane_shading(layout)
        hulls = [
            transform_points(pose, asset.hull)
            for asset, pose in zip(layout.assets, layout.poses, strict=True)
            if asset.kind in ("object", "distractor")
        ]
        ever_visible: set[int] = set()
        with SceneWriter(out_dir, scene_name(index), conf.depth_unit, conf.png_compression) as w:
            for f, T_world_cam in enumerate(layout.cameras):
                T_cam_world = invert_pose(T_world_cam)
                poses = [T_cam_world @ T for T in layout.poses]
                lighting = layout.lighting.in_camera(T_world_cam)
                view = self.renderer.render(meshes, poses, layout.K, conf.size, lighting)
                counts = np.bincount(view.labels.ravel(), minlength=len(meshes) + 1)
                visible = [
                    i + 1
                    for i, asset in enumerate(layout.assets)
                    if asset.kind == "object" and counts[i + 1] >= min_pixels
                ]
                if not visible:
                    raise RejectedSceneError(f"frame {f} shows no object")
                ever_visible.update(visible)
                rgb = self._composite(view, layout, T_world_cam, shading, hulls)
                w.write_frame(f, rgb, view.depth, view.labels)
                crops = []
                if conf.i0:
                    crops = self._write_i0(w, f, layout, poses, visible, lighting)
                frames_meta.append(
                    {
                        "index": f,
                        "K": layout.K.tolist(),
                        "T_world_cam": pose_to_json(T_world_cam),
                        "visible": visible,
                        "visible_pixels": [int(counts[i]) for i in visible],
                        "i0": crops,
                    }
                )
            for i, asset in enumerate(layout.assets):
                if asset.kind == "object" and i + 1 not in ever_visible:
                    LOG.info("object %s is never visible in scene %d", asset.mesh.name, index)
                    layout.notes.append(f"object {asset.mesh.name} never visible")
            return w.commit(self._scene_meta(index, layout, frames_meta))

    def _composite(
        self,
        view: RenderedView,
        layout: SceneLayout,
        T_world_cam: np.ndarray,
        shading: PlaneShading,
        hulls: list[np.ndarray],
    ) -> np.ndarray:
        """Photos on the background, floor and table (with shadows), colour jitter on the rest."""
        size, K, labels = self.conf.size, layout.K, view.labels
        rgb = apply_jitter(view.rgb, labels, layout.jitters)
        sky = labels == 0
        if sky.any():
            rgb[sky] = sky_view(self.textures, layout.sky_look, K, T_world_cam, size)[sky]
        light = view.rgb.astype(np.float32) * shading.gain
        table = labels == TABLE_ID
        if table.any():
            for direction, share in zip(shading.directions, shading.shares, strict=True):
                soft = 0.004 * size[0]
                mask = shadow_mask(hulls, direction, K, T_world_cam, size, soft)
                light *= (1.0 - share * mask)[..., None]
        for instance_id, look, height in (
            (TABLE_ID, layout.table_look, 0.0),
            (FLOOR_ID, layout.floor_look, -layout.table_height),
        ):
            region = labels == instance_id
            if region.any():
                photo = plane_view(self.textures, look, K, T_world_cam, size, height)
                gain = np.asarray(layout.jitters[instance_id].gain, np.float32)
                lit = photo[region] * light[region] * gain
                rgb[region] = np.clip(lit + 0.5, 0, 255).astype(np.uint8)
        return rgb

    def _plane_shading(self, layout: SceneLayout) -> PlaneShading:
        """How the scene's lights shade a horizontal plane, from renders of the table alone.

        With flat shading and directional lights the table is evenly lit, so one render per
        light (that light off) gives the share of the light a shadow of that light removes.
        """
        T_world_cam = layout.cameras[0]
        pose = [invert_pose(T_world_cam)]
        table = [layout.assets[0].mesh]
        lighting = layout.lighting.in_camera(T_world_cam)

        def brightness(lights: tuple) -> float:
            view = self.renderer.render(
                table, pose, layout.K, self.conf.size, Lighting(lighting.ambient, lights)
            )
            values = view.rgb[view.labels == 1]
            return float(np.median(values.mean(axis=1))) if len(values) else float(TABLE_GREY)

        full = max(brightness(lighting.lights), 1.0)
        shares = []
        for k in range(len(lighting.lights)):
            others = lighting.lights[:k] + lighting.lights[k + 1 :]
            shares.append(float(np.clip(1.0 - brightness(others) / full, 0.0, 0.9)))
        directions = [np.asarray(light.direction) for light in layout.lighting.lights]
        return PlaneShading(0.85 / full, directions, shares)

    def _write_i0(
        self,
        writer: SceneWriter,
        frame: int,
        layout: SceneLayout,
        poses: list[np.ndarray],
        visible: list[int],
        scene_lighting: Lighting,
    ) -> list[dict]:
        """Render each visible object alone (I0) and store the crop of its box.

        Objects whose projected boxes are disjoint cannot touch each other's pixels (no shadows
        in the renderer), so they share one render call. Every call is full-frame: with OSMesa a
        change of image size rebuilds the GL context and re-uploads every texture.
        """
        conf = self.conf
        lighting = scene_lighting if conf.i0_scene_lighting else Lighting()
        boxes = {
            i: _projected_box(layout.assets[i - 1].hull, poses[i - 1], layout.K, conf.size)
            for i in visible
        }
        crops = []
        for group in _disjoint_groups(boxes):
            view = self.renderer.render(
                [layout.assets[i - 1].mesh for i in group],
                [poses[i - 1] for i in group],
                layout.K,
                conf.size,
                lighting,
                conf.i0_background,
            )
            for slot, instance_id in enumerate(group):
                x0, y0, x1, y1 = boxes[instance_id]
                mask = view.labels[y0:y1, x0:x1] == slot + 1
                if not mask.any():
                    continue
                rgb = view.rgb[y0:y1, x0:x1].copy()
                rgb[~mask] = conf.i0_background
                rel = writer.write_i0(frame, instance_id, rgb, mask)
                crops.append({"id": instance_id, "box": list(boxes[instance_id]), "file": rel})
        return sorted(crops, key=lambda crop: crop["id"])

    def _scene_meta(self, index: int, layout: SceneLayout, frames: list[dict]) -> dict:
        textures = self.textures.sources
        instances = [
            {
                "id": i + 1,
                "name": asset.mesh.name,
                "kind": asset.kind,
                "mesh": str(asset.mesh.path),
                "symmetric": asset.mesh.symmetric,
                "T_world_obj": pose_to_json(pose),
            }
            for i, (asset, pose) in enumerate(zip(layout.assets, layout.poses, strict=True))
        ]
        return {
            "index": index,
            "seed": self.conf.seed,
            "size": list(self.conf.size),
            "instances": instances,
            "frames": frames,
            "i0_background": list(self.conf.i0_background),
            "table": {
                "size": layout.table_size,
                "height": layout.table_height,
                "photo": textures[layout.table_look.photo] if textures else None,
                "floor_photo": textures[layout.floor_look.photo] if textures else None,
            },
            "sky": {"photo": textures[layout.sky_look.photo] if textures else None},
            "lighting": dataclasses.asdict(layout.lighting),
            "jitter": {str(k): dataclasses.asdict(v) for k, v in layout.jitters.items()},
            "notes": layout.notes,
            "generator": dataclasses.asdict(self.conf),
        }


@dataclass
class PlaneShading:
    gain: float  # rendered grey → shading factor, about 0.85 on the lit table
    directions: list[np.ndarray]  # world directions of the scene's lights
    shares: list[float]  # fraction of the table's light that each light contributes


def _disjoint_groups(boxes: dict[int, tuple[int, int, int, int]]) -> list[list[int]]:
    """Greedy partition of box ids into groups whose boxes do not overlap."""
    groups: list[list[int]] = []
    for key, box in boxes.items():
        for group in groups:
            if all(not _overlap(box, boxes[other]) for other in group):
                group.append(key)
                break
        else:
            groups.append([key])
    return groups


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _projected_box(
    hull: np.ndarray, T_cam_obj: np.ndarray, K: np.ndarray, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1), end exclusive, around the whole object, clipped to the image."""
    width, height = size
    points = transform_points(T_cam_obj, hull)
    if np.any(points[:, 2] <= 1e-3):
        return 0, 0, width, height  # partly behind the camera: the box is unbounded
    uv = project(K, points)
    x0, y0 = np.floor(uv.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(uv.max(axis=0)).astype(int) + 2
    return max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1))
