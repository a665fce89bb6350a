"""Settings of the scene generator (`ockd-gen --config`, training/configs/generate_*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ockd_ros.training.camera_path import CameraConfig
from ockd_ros.training.physics import PhysicsConfig
from ockd_ros.training.randomization import JitterConfig, LightingConfig, TextureConfig
from ockd_ros.training.scene_format import DEFAULT_DEPTH_UNIT


@dataclass(frozen=True)
class SceneConfig:
    meshes: str = "hope"  # comma list: 'hope', names, mesh files, directories (see mesh_specs)
    units: str = "mm"  # units of mesh files and directories without an '@unit' suffix
    distractor_meshes: str = ""  # same syntax; rendered as distractors, never as objects
    scenes: int = 100
    frames_per_scene: int = 10
    seed: int = 0
    size: tuple[int, int] = (320, 320)  # width, height
    objects_per_scene: int = 6
    distractors: tuple[int, int] = (1, 4)  # inclusive range per scene
    primitive_pool: int = 16  # textured boxes, cylinders, spheres, capsules made at start-up
    min_objects: int = 1  # a scene with fewer objects left on the table is re-drawn
    min_visible: float = 0.001  # an object is visible with ≥ this fraction of the image
    i0: bool = True  # render each visible object alone (I0)
    i0_background: tuple[int, int, int] = (0, 0, 0)
    i0_scene_lighting: bool = False  # False: the template head light, like the template banks
    max_texture_size: int = 1024  # object textures are downscaled to this
    png_compression: int = 1  # 0–9: 1 is fast and still about halves the files
    depth_unit: float = DEFAULT_DEPTH_UNIT
    max_attempts: int = 5  # re-draws of a scene before giving up on it
    camera: CameraConfig = field(default_factory=CameraConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    lighting: LightingConfig = field(default_factory=LightingConfig)
    jitter: JitterConfig = field(default_factory=JitterConfig)
    textures: TextureConfig = field(default_factory=TextureConfig)

    def validate(self) -> None:
        problems = []
        if self.scenes < 0 or self.frames_per_scene < 1:
            problems.append("scenes must be ≥ 0 and frames_per_scene ≥ 1")
        if min(self.size) < 16:
            problems.append(f"size {self.size} is too small")
        if self.objects_per_scene < 1 or self.min_objects < 1:
            problems.append("objects_per_scene and min_objects must be ≥ 1")
        if not 0 <= self.distractors[0] <= self.distractors[1]:
            problems.append(f"distractors range {self.distractors} is not 0 ≤ low ≤ high")
        if not self.physics.table_sizes or min(self.physics.table_sizes) <= 0:
            problems.append("physics.table_sizes must hold positive sizes")
        if problems:
            raise ValueError("invalid SceneConfig: " + "; ".join(problems))
