"""Domain randomisation: photo textures, lights, intrinsics, colour jitter, textured primitives.

Everything here draws from a `numpy.random.Generator` passed in, so a scene seed reproduces it.
Textures for the table, the floor and the background are real photos: scikit-image's sample
images always, plus Debian wallpaper packages (mate-backgrounds, plasma-workspace-wallpapers)
where installed.

Table, floor and background are textured by compositing, not by the renderer: a horizontal plane
maps onto the image through a homography, and the background is a sky box (a photo indexed by
viewing direction). Both stay consistent across the frames of a scene, cost a warp per frame and
need no texture upload per scene. The renderer casts no shadows, so the objects' shadows on the
table are composited too (`shadow_mask`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import trimesh
from PIL import Image

from ockd_ros.geometry import intrinsics, invert_pose, make_pose, project, transform_points
from ockd_ros.render import DirectionalLight, Lighting

LOG = logging.getLogger(__name__)
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")
WALLPAPER_GLOBS = (
    "/usr/share/backgrounds/mate/nature/*.jpg",
    "/usr/share/wallpapers/*/contents/images/*",
)


@dataclass(frozen=True)
class LightingConfig:
    count: tuple[int, int] = (1, 3)  # directional lights per scene, inclusive range
    intensity: tuple[float, float] = (1.5, 8.0)
    ambient: tuple[float, float] = (0.1, 0.6)
    tint: float = 0.25  # largest drop of a colour channel below white (warm or cold lights)
    elevation_deg: tuple[float, float] = (15.0, 90.0)  # where lights come from, above the table


@dataclass(frozen=True)
class IntrinsicsConfig:
    hfov_deg: tuple[float, float] = (45.0, 75.0)  # horizontal field of view
    aspect_jitter: float = 0.02  # |fy / fx - 1| at most
    center_jitter: float = 0.03  # principal point offset from the centre, fraction of the size


@dataclass(frozen=True)
class JitterConfig:
    """Per-instance colour jitter applied to object and distractor pixels."""

    brightness: float = 0.25  # gain in [1 - b, 1 + b]
    channel: float = 0.08  # extra per-channel gain in [1 - c, 1 + c]
    saturation: float = 0.3  # saturation scale in [1 - s, 1 + s]


@dataclass(frozen=True)
class TextureConfig:
    max_size: int = 512  # photos are downscaled to this longest side when loaded
    max_photos: int = 200  # cap on wallpaper files read (scikit-image photos always load)
    table_span_m: tuple[float, float] = (0.3, 1.5)  # table length covered by one photo
    floor_span_m: tuple[float, float] = (1.0, 4.0)  # floor length covered by one photo
    sky_span_deg: tuple[float, float] = (90.0, 200.0)  # azimuth range covered by one photo


def uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    low, high = bounds
    return float(rng.uniform(low, high))


# ---------------------------------------------------------------------------------------------
# Photos


class TextureBank:
    """Real photos (RGB uint8, longest side ≤ max_size) to texture tables, backgrounds, props."""

    def __init__(self, images: Sequence[np.ndarray], sources: Sequence[str] = ()):
        if not images:
            raise ValueError("a TextureBank needs at least one image")
        self.images = list(images)
        self.sources = list(sources)

    @classmethod
    def from_system(cls, conf: TextureConfig | None = None) -> TextureBank:
        """scikit-image's photos, plus the Debian wallpapers that are installed."""
        conf = conf or TextureConfig()
        paths = photo_files(conf.max_photos)
        images, sources = [], []
        for path in paths:
            image = _load_photo(path, conf.max_size)
            if image is not None:
                images.append(image)
                sources.append(path.name)
        LOG.info("texture bank: %d photos from %d files", len(images), len(paths))
        return cls(images, sources)

    def sample(self, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        """A random photo and its index in the bank."""
        index = int(rng.integers(len(self.images)))
        return index, self.images[index]

    def crop(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A random square crop, resized to size × size."""
        _, image = self.sample(rng)
        h, w = image.shape[:2]
        side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
        y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        return cv2.resize(image[y : y + side, x : x + side], (size, size), cv2.INTER_AREA)


def photo_files(max_wallpapers: int) -> list[Path]:
    import skimage

    files = sorted(
        p
        for p in (Path(skimage.__file__).parent / "data").iterdir()
        if p.suffix.lower() in PHOTO_SUFFIXES
    )
    wallpapers = []
    for pattern in WALLPAPER_GLOBS:
        root = Path("/")
        wallpapers += sorted(
            p for p in root.glob(pattern.lstrip("/")) if p.suffix.lower() in PHOTO_SUFFIXES
        )
    return files + wallpapers[:max_wallpapers]


def _load_photo(path: Path, max_size: int) -> np.ndarray | None:
    """RGB uint8 photo, or None for files that are no photo (text, binary masks, tiny icons)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        LOG.debug("skipping texture %s: not readable", path)
        return None
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    # Sample images include rendered text and binary shapes: few grey levels means no photo.
    if min(image.shape[:2]) < 128 or len(np.unique(gray)) < 64:
        return None
    scale = max_size / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# ---------------------------------------------------------------------------------------------
# Lights, intrinsics, colour jitter


@dataclass(frozen=True)
class WorldLight:
    direction: tuple[float, float, float]  # the light travels along this world direction
    color: tuple[float, float, float]
    intensity: float


@dataclass(frozen=True)
class WorldLighting:
    """Lights fixed in the world, so that they stay put while the camera moves."""

    ambient: tuple[float, float, float]
    lights: tuple[WorldLight, ...]

    def in_camera(self, T_world_cam: np.ndarray) -> Lighting:
        R_cam_world = T_world_cam[:3, :3].T
        return Lighting(
            ambient=self.ambient,
            lights=tuple(
                DirectionalLight(
                    tuple(float(v) for v in R_cam_world @ light.direction),
                    light.color,
                    light.intensity,
                )
                for light in self.lights
            ),
        )


def sample_lighting(rng: np.random.Generator, conf: LightingConfig) -> WorldLighting:
    count = int(rng.integers(conf.count[0], conf.count[1] + 1))
    lights = []
    for _ in range(count):
        elevation = math.radians(uniform(rng, conf.elevation_deg))
        azimuth = rng.uniform(0, 2 * math.pi)
        towards_light = np.array(
            [
                math.cos(elevation) * math.cos(azimuth),
                math.cos(elevation) * math.sin(azimuth),
                math.sin(elevation),
            ]
        )
        lights.append(
            WorldLight(
                direction=tuple(float(v) for v in -towards_light),
                color=_tint(rng, conf.tint),
                intensity=uniform(rng, conf.intensity),
            )
        )
    ambient = uniform(rng, conf.ambient)
    return WorldLighting(tuple(ambient * c for c in _tint(rng, conf.tint / 2)), tuple(lights))


def _tint(rng: np.random.Generator, amount: float) -> tuple[float, float, float]:
    # Floats, not ints: pyrender reads integer colours as 0–255.
    return tuple(float(1.0 - rng.uniform(0, amount)) for _ in range(3))


def sample_intrinsics(
    rng: np.random.Generator, size: tuple[int, int], conf: IntrinsicsConfig
) -> np.ndarray:
    """3×3 K for a `size` = (width, height) image with a random field of view and centre."""
    width, height = size
    fx = (width / 2) / math.tan(math.radians(uniform(rng, conf.hfov_deg)) / 2)
    fy = fx * (1 + rng.uniform(-conf.aspect_jitter, conf.aspect_jitter))
    cx = (width - 1) / 2 + rng.uniform(-1, 1) * conf.center_jitter * width
    cy = (height - 1) / 2 + rng.uniform(-1, 1) * conf.center_jitter * height
    return intrinsics(fx, fy, cx, cy)


@dataclass(frozen=True)
class ColorJitter:
    gain: tuple[float, float, float]
    saturation: float


def sample_jitter(rng: np.random.Generator, conf: JitterConfig) -> ColorJitter:
    brightness = 1 + rng.uniform(-conf.brightness, conf.brightness)
    gain = tuple(
        float(brightness * (1 + rng.uniform(-conf.channel, conf.channel))) for _ in range(3)
    )
    return ColorJitter(gain, float(1 + rng.uniform(-conf.saturation, conf.saturation)))


def apply_jitter(
    rgb: np.ndarray, labels: np.ndarray, jitters: dict[int, ColorJitter]
) -> np.ndarray:
    """Copy of H×W×3 uint8 `rgb` with `jitters[id]` applied where labels == id."""
    if not jitters:
        return rgb.copy()
    count = max(int(labels.max(initial=0)), *jitters) + 1
    gains = np.ones((count, 3), np.float32)
    saturation = np.ones(count, np.float32)
    for instance_id, jitter in jitters.items():
        gains[instance_id] = jitter.gain
        saturation[instance_id] = jitter.saturation
    image = rgb.astype(np.float32) * gains[labels]
    gray = image.mean(axis=2, keepdims=True)
    image = gray + (image - gray) * saturation[labels][..., None]
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Table and background compositing


@dataclass(frozen=True)
class PlaneLook:
    """A photo on a horizontal plane: `A` maps plane metres (x, y, 1) to photo pixels."""

    photo: int  # index in the TextureBank
    A: np.ndarray  # 3×3 affine


@dataclass(frozen=True)
class SkyLook:
    """A photo around the scene, indexed by the viewing direction (azimuth, elevation)."""

    photo: int
    azimuth0: float  # radians at the photo's left edge
    azimuth_span: float  # radians covered by the photo's width
    elevation_top: float  # radians at the photo's top edge
    elevation_span: float


def sample_plane_look(
    rng: np.random.Generator, bank: TextureBank, span_m: tuple[float, float]
) -> PlaneLook:
    """A random photo, scale (metres covered by its width), rotation and offset on a plane."""
    index, image = bank.sample(rng)
    pixels_per_metre = image.shape[1] / uniform(rng, span_m)
    angle = rng.uniform(0, 2 * math.pi)
    c, s = math.cos(angle) * pixels_per_metre, math.sin(angle) * pixels_per_metre
    offset = rng.uniform(0, image.shape[1]), rng.uniform(0, image.shape[0])
    return PlaneLook(index, np.array([[c, -s, offset[0]], [s, c, offset[1]], [0.0, 0.0, 1.0]]))


def sample_sky_look(rng: np.random.Generator, bank: TextureBank, conf: TextureConfig) -> SkyLook:
    index, image = bank.sample(rng)
    azimuth_span = math.radians(uniform(rng, conf.sky_span_deg))
    # Keep the photo's aspect ratio on the sphere so it is not stretched.
    elevation_span = azimuth_span * image.shape[0] / image.shape[1]
    top = rng.uniform(0.2, 0.8) * math.pi / 2 + elevation_span / 2
    return SkyLook(index, rng.uniform(0, 2 * math.pi), azimuth_span, top, elevation_span)


def plane_view(
    bank: TextureBank,
    look: PlaneLook,
    K: np.ndarray,
    T_world_cam: np.ndarray,
    size: tuple[int, int],
    height: float = 0.0,
) -> np.ndarray:
    """H×W×3 uint8: the photo as the camera sees it on the plane z = height (tiled by mirroring)."""
    T_cam_plane = invert_pose(T_world_cam) @ make_pose(np.eye(3), [0.0, 0.0, height])
    plane_to_image = K @ T_cam_plane[:3][:, [0, 1, 3]]
    image_to_photo = look.A @ np.linalg.inv(plane_to_image)
    return cv2.warpPerspective(
        bank.images[look.photo],
        image_to_photo,
        size,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )


def sky_view(
    bank: TextureBank,
    look: SkyLook,
    K: np.ndarray,
    T_world_cam: np.ndarray,
    size: tuple[int, int],
) -> np.ndarray:
    """H×W×3 uint8: the background photo seen along each pixel's viewing direction."""
    width, height = size
    u, v = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    K_inv = np.linalg.inv(K).astype(np.float32)
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ (T_world_cam[:3, :3] @ K_inv).T.astype(
        np.float32
    )
    azimuth = np.arctan2(rays[..., 1], rays[..., 0])
    elevation = np.arctan2(rays[..., 2], np.hypot(rays[..., 0], rays[..., 1]))
    image = bank.images[look.photo]
    h, w = image.shape[:2]
    map_x = np.mod(azimuth - look.azimuth0, 2 * math.pi) / look.azimuth_span * w
    map_y = (look.elevation_top - elevation) / look.elevation_span * h
    return cv2.remap(
        image,
        map_x.astype(np.float32),
        map_y.astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )


def shadow_mask(
    hulls_world: Sequence[np.ndarray],
    direction: np.ndarray,
    K: np.ndarray,
    T_world_cam: np.ndarray,
    size: tuple[int, int],
    softness_px: float = 1.0,
) -> np.ndarray:
    """H×W float32 in [0, 1]: where the table plane z = 0 lies in the shadow of the hulls.

    Each convex hull (N×3 world points) is projected along the light `direction` onto the plane;
    the projection of a convex body is the convex polygon of its projected points. The renderer
    casts no shadows, so they are composited onto the table this way.
    """
    width, height = size
    mask = np.zeros((height, width), np.float32)
    if direction[2] > -1e-3:
        return mask  # grazing or from below: no shadow on the table top
    T_cam_world = invert_pose(T_world_cam)
    for hull in hulls_world:
        on_plane = hull - np.outer(hull[:, 2] / direction[2], direction)
        in_camera = transform_points(T_cam_world, on_plane)
        if np.any(in_camera[:, 2] <= 1e-3):
            continue  # partly behind the camera: the shadow is cut off there anyway
        # Fixed-point coordinates (4 fractional bits) keep the polygon sub-pixel accurate.
        points = np.round(project(K, in_camera) * 16).astype(np.int32)
        cv2.fillConvexPoly(mask, cv2.convexHull(points), 1.0, cv2.LINE_AA, shift=4)
    if softness_px > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), softness_px)
    return mask


# ---------------------------------------------------------------------------------------------
# Textured primitives (distractors)


def make_primitives(
    rng: np.random.Generator,
    bank: TextureBank,
    count: int,
    size_range: tuple[float, float] = (0.03, 0.12),
    texture_size: int = 256,
) -> list[trimesh.Trimesh]:
    """`count` boxes, cylinders, spheres and capsules in metres, each with a photo texture."""
    meshes = []
    for _ in range(count):
        size = uniform(rng, size_range)
        kind = int(rng.integers(4))
        if kind == 0:
            mesh = trimesh.creation.box(extents=size * rng.uniform(0.4, 1.0, 3))
        elif kind == 1:
            mesh = trimesh.creation.cylinder(
                radius=size * rng.uniform(0.2, 0.5), height=size, sections=24
            )
        elif kind == 2:
            mesh = trimesh.creation.icosphere(subdivisions=2, radius=size / 2)
        else:
            mesh = trimesh.creation.capsule(
                height=size * rng.uniform(0.3, 0.7), radius=size * rng.uniform(0.15, 0.3)
            )
        meshes.append(_box_mapped(mesh, bank.crop(rng, texture_size), size))
    return meshes


def _box_mapped(mesh: trimesh.Trimesh, texture: np.ndarray, span: float) -> trimesh.Trimesh:
    """Texture `mesh` by projecting each face along its dominant normal axis (box mapping)."""
    mesh = mesh.copy()
    # Each face needs its own vertices: a shared corner takes different UVs on different faces.
    mesh.unmerge_vertices()
    axis = np.repeat(np.abs(mesh.face_normals).argmax(axis=1), 3)
    vertices = mesh.vertices[mesh.faces.reshape(-1)]
    keep = np.array([[1, 2], [0, 2], [0, 1]])[axis]
    uv = np.take_along_axis(vertices, keep, axis=1) / span + 0.5
    visual_uv = np.zeros((len(mesh.vertices), 2))
    visual_uv[mesh.faces.reshape(-1)] = uv
    mesh.visual = trimesh.visual.TextureVisuals(
        uv=visual_uv,
        material=trimesh.visual.material.SimpleMaterial(image=Image.fromarray(texture)),
    )
    return mesh
