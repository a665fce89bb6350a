"""Flat names for the estimator's settings, and the one mapping of them onto `EstimatorConfig`.

The node's estimator parameters and the CLIs' `--config` keys (and their options such as
`--views`) are these names: `frame_scale`, `min_inliers`, `templates_per_object`... One table,
`SETTINGS`, says for each the field of `EstimatorConfig` it sets, its default, description and
range; `estimator_config` applies them over the backend's defaults for every caller alike. A
new field becomes a node parameter and a `--config` key by adding one row here.

A setting's default leaves the backend's own value in place: either it equals that value for
every backend (a test checks it), or it is the setting's `keep` value (0 for `min_inliers`:
each backend's own). Feature settings apply only to the backends whose feature config has the
field (`r_thr`: ockd).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ockd_ros.config import merge_config
from ockd_ros.features import BACKENDS
from ockd_ros.pose.estimator import MAX_SCALE, MIN_SCALE, EstimatorConfig, default_config
from ockd_ros.pose.matching import BANK_PRECISIONS
from ockd_ros.pose.templates import MIN_TEMPLATE_SCALE

DEFAULT_BACKEND = "ockd"
NOT_KEPT = object()  # a setting with no value that keeps the backend's own


@dataclass(frozen=True)
class Setting:
    """One flat name and the `EstimatorConfig` field it sets.

    field: dotted path in `EstimatorConfig`, e.g. 'frame_scale', 'pnp.min_inliers',
    'features.device' (a key of the backend's feature config).
    description: may name `{defaults}`, filled in with each backend's value of the field.
    minimum, maximum: the range of a number (inclusive; None: open).
    check: the reason a value is invalid beyond type and range, or None.
    keep: the value that leaves the backend's own in place (NOT_KEPT: none does).
    any_length: a list of numbers may have any length (else the length of `default`).
    """

    name: str
    field: str
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    check: Callable[[Any], str | None] | None = None
    keep: Any = NOT_KEPT
    any_length: bool = False

    def applies_to(self, backend: str) -> bool:
        """Whether `backend` has this field: every backend, but a feature only those whose
        feature config declares it."""
        section, _, key = self.field.partition(".")
        if section != "features":
            return True
        return any(field.name == key for field in dataclasses.fields(BACKENDS[backend][1]))

    def backend_value(self, conf: EstimatorConfig) -> Any:
        """The field's value in `conf`; a feature's from its backend's config when not set."""
        section, _, key = self.field.partition(".")
        if section == "features":
            return dataclasses.asdict(merge_config(BACKENDS[conf.backend][1](), conf.features))[key]
        value = conf
        for part in self.field.split("."):
            value = getattr(value, part)
        return value

    def describe(self) -> str:
        """The description with each backend's default and the backends the setting applies to."""
        backends = [backend for backend in BACKENDS if self.applies_to(backend)]
        defaults = ", ".join(
            f"{backend} {self.backend_value(default_config(backend))}" for backend in backends
        )
        text = self.description.format(defaults=f"({defaults})")
        if len(backends) < len(BACKENDS):
            text += f" ({', '.join(backends)} only)"
        return text

    def reason(self, value: Any) -> str | None:
        """Why `value` is invalid for this setting (type, range, check), or None."""
        reason = _type_problem(self.default, value, self.any_length)
        if reason is None and _is_number(value):
            reason = _range_problem(value, self.minimum, self.maximum)
        if reason is None and self.check is not None and value != self.keep:
            reason = self.check(value)
        return reason

    def problem(self, value: Any) -> str | None:
        """`reason`, naming the setting and the value."""
        reason = self.reason(value)
        return None if reason is None else f"{self.name}={value!r} {reason}"


def _type_problem(default: Any, value: Any, any_length: bool = False) -> str | None:
    """Why `value` is not of the setting's type (that of its `default`; lists of its length
    unless `any_length`), or None."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(default, int):
        return None if _is_number(value) and isinstance(value, int) else "must be an integer"
    if isinstance(default, float):
        return None if _is_number(value) else "must be a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "must be a string"
    if isinstance(default, list):
        vector = isinstance(value, list | tuple) and all(map(_is_number, value))
        if any_length:
            return None if vector and value else "must be a list of numbers"
        return None if vector and len(value) == len(default) else f"must be {len(default)} numbers"
    raise TypeError(f"no type check for a setting of type {type(default).__name__}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _range_problem(value: float, minimum: float | None, maximum: float | None) -> str | None:
    if (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
        return None
    low = "-∞" if minimum is None else f"{minimum:g}"
    high = "∞" if maximum is None else f"{maximum:g}"
    return f"must be in [{low}, {high}]"


def one_of(choices) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {list(choices)}"


def _template_scales(value: list[float]) -> str | None:
    if all(MIN_TEMPLATE_SCALE <= scale <= 1.0 for scale in value):
        return None
    return f"must be scales in [{MIN_TEMPLATE_SCALE}, 1]"


def _zero_or_at_least(minimum: int) -> Callable[[int], str | None]:
    return lambda value: None if value == 0 or value >= minimum else f"must be 0 or ≥ {minimum}"


def _device(value: str) -> str | None:
    from ockd_ros.device import resolve_device

    try:
        resolve_device(value)
    except ValueError as error:
        return str(error)
    return None


def _file(value: str) -> str | None:
    return None if Path(value).is_file() else f"no such file: {value}"


SETTINGS = (
    Setting(
        "backend", "backend", DEFAULT_BACKEND, "feature backend: ockd (the network), sift (the "
        "OpenCV baseline) or xfeat (optional extra)", check=one_of(BACKENDS),
    ),
    Setting(
        "checkpoint", "features.checkpoint", "", "network checkpoint file; empty: the shipped "
        "default", check=_file, keep="",
    ),
    Setting(
        "device", "features.device", "auto", "torch device: auto, cpu, cuda, cuda:N",
        check=_device,
    ),
    Setting(
        "grid_stride", "features.grid_stride", 4, "keypoints on a grid every N pixels, as pose "
        "matching needs; 0: detector maxima (r_thr, max_keypoints)", minimum=0,
    ),
    Setting(
        "r_thr", "features.r_thr", 1.5, "keypoint reliability threshold (with grid_stride 0)",
        minimum=0.0,
    ),
    Setting(
        "max_keypoints", "features.max_keypoints", 0, "keypoints kept per image, strongest "
        "first (ockd: with grid_stride 0); 0: the backend's default {defaults}", minimum=0,
        keep=0,
    ),
    Setting(
        "templates_per_object", "templates.views", 96, "template views rendered per object "
        "(camera directions around it)", minimum=1,
    ),
    Setting(
        "templates_inplane", "templates.inplane", 0, "in-plane turns of the camera per view; 0: "
        "the backend's default {defaults}", minimum=0, keep=0,
    ),
    Setting(
        "templates_hemisphere", "templates.hemisphere", False, "template views from above only "
        "(objects that stand on a surface): half the templates for the same density",
    ),
    Setting(
        "templates_up", "templates.up", [0.0, 0.0, 1.0], "the object axis that points up in "
        "templates and, with templates_hemisphere, the side views come from (mesh frame)",
    ),
    Setting(
        "templates_scales", "templates.scales", [0.0], "sizes of the object in the templates, "
        "relative to the largest: each view is kept at each (0.55: for objects that look about "
        "half as large in the images); [0]: the backend's default {defaults}",
        check=_template_scales, keep=[0.0], any_length=True,
    ),
    Setting(
        "frame_scale", "frame_scale", 1.0, "each image is resized by this before extraction "
        "(keypoints stay in image pixels): above 1 where objects look smaller than in the "
        "templates (slower)", minimum=MIN_SCALE, maximum=MAX_SCALE,
    ),
    Setting(
        "max_ratio", "matching.max_ratio", 0.0, "Lowe's ratio test: a template keypoint's "
        "nearest frame descriptor must be this much closer than its second (1: no test); 0: the "
        "backend's default {defaults}", minimum=0.0, maximum=1.0, keep=0.0,
    ),
    Setting(
        "top_templates", "matching.top_templates", 3, "templates with the most matches that go "
        "on to PnP, per object", minimum=1,
    ),
    Setting(
        "bank_precision", "matching.bank_precision", "float32", "type the template banks are "
        "held in: float16 halves their memory (ockd: 130-160 MB per object in float32), and "
        "moves the poses about as much as a 1e-4 change of the descriptors does",
        check=one_of(BANK_PRECISIONS),
    ),
    Setting(
        "min_inliers", "pnp.min_inliers", 0, "PnP inliers needed to report a pose; 0: the "
        "backend's default {defaults}", minimum=0, check=_zero_or_at_least(4), keep=0,
    ),
    Setting(
        "reprojection_error", "pnp.reprojection_error", 4.0, "pixels: PnP inlier threshold",
        minimum=0.0,
    ),
    Setting(
        "verify_hypotheses", "verify.hypotheses", 4, "with pose verification (ockd): templates "
        "with the most matches that each give a PnP pose to judge", minimum=1,
    ),
    Setting(
        "verify_min_share", "verify.min_share", 0.25, "with pose verification (ockd): share of "
        "a template's projected points whose frame descriptors must agree for a pose",
        minimum=0.0, maximum=1.0,
    ),
    Setting(
        "verify_confident_share", "verify.confident_share", 0.5, "with pose verification "
        "(ockd): the share a pose needs when no other template's pose agrees with it",
        minimum=0.0, maximum=1.0,
    ),
    Setting(
        "verify_occlusion", "verify.occlusion", True, "with pose verification (ockd): a refused "
        "pose is judged again on the template points that no object found nearer hides",
    ),
    Setting(
        "cache_dir", "cache_dir", "", "template bank cache folder; empty: the default "
        "($XDG_CACHE_HOME/ockd_ros/templates, ~/.cache/ockd_ros/templates without it)", keep="",
    ),
)  # fmt: skip
SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}
DEFAULTS = {setting.name: setting.default for setting in SETTINGS}


def estimator_config(
    settings: Mapping[str, Any], sections: Mapping[str, Any] | None = None
) -> EstimatorConfig:
    """The `EstimatorConfig` for flat `settings` (names of `SETTINGS` to values; names left out
    keep the backend's defaults): the backend's defaults (`default_config`), then `sections`
    (nested overrides such as a `--config` file's `pnp: {...}`), then the settings.

    Raises ValueError naming every invalid or unknown setting, or what the config's own
    validation refuses."""
    unknown = sorted(set(settings) - set(SETTINGS_BY_NAME))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; known: {sorted(SETTINGS_BY_NAME)}")
    if problems := [r for name, v in settings.items() if (r := SETTINGS_BY_NAME[name].problem(v))]:
        raise ValueError("; ".join(problems))
    conf = merge_config(default_config(settings.get("backend", DEFAULT_BACKEND)), sections)
    overrides: dict[str, Any] = {}
    for setting in SETTINGS:
        value = settings.get(setting.name, setting.keep)
        if value == setting.keep or not setting.applies_to(conf.backend):
            continue
        value = _as_field_value(setting.default, value)
        if value != setting.backend_value(conf):  # only what changes: defaults compare equal
            _set_path(overrides, setting.field, value)
    conf = merge_config(conf, overrides)
    conf.validate()
    return conf


def _as_field_value(default: Any, value: Any) -> Any:
    if isinstance(default, list):
        return tuple(float(v) for v in value)  # the config's vectors are tuples
    if isinstance(default, float):
        return float(value)
    return value


def _set_path(overrides: dict[str, Any], field: str, value: Any) -> None:
    *sections, key = field.split(".")
    for section in sections:
        overrides = overrides.setdefault(section, {})
    overrides[key] = value


def settings_problem(settings: Mapping[str, Any]) -> str | None:
    """Why `settings` give no valid `EstimatorConfig`, or None."""
    try:
        estimator_config(settings)
    except ValueError as error:
        return str(error)
    return None


def split_config(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A `--config` mapping as (flat settings, nested sections of `EstimatorConfig`).

    Its keys are flat names (`frame_scale: 2.0`, `min_inliers: 20`) or `EstimatorConfig`
    sections and fields (`pnp: {reprojection_error: 8.0}`); anything else is an error."""
    fields = {field.name for field in dataclasses.fields(EstimatorConfig)}
    unknown = sorted(set(raw) - set(SETTINGS_BY_NAME) - fields)
    if unknown:
        raise ValueError(
            f"unknown settings {unknown}; flat names: {sorted(SETTINGS_BY_NAME)}; "
            f"EstimatorConfig fields: {sorted(fields)}"
        )
    flat = {key: value for key, value in raw.items() if key in SETTINGS_BY_NAME}
    sections = {key: value for key, value in raw.items() if key not in SETTINGS_BY_NAME}
    return flat, sections


def load_settings(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A `--config` YAML file as (flat settings, nested sections): see `split_config`."""
    path = Path(path)
    with path.open() as stream:
        raw = yaml.safe_load(stream) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return split_config(raw)


def changed_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings whose values differ from their defaults (what a log line should name)."""
    return {
        name: value
        for name, value in settings.items()
        if _as_field_value(DEFAULTS[name], value) != _as_field_value(DEFAULTS[name], DEFAULTS[name])
    }
