"""6D object pose from one RGB image: template banks, matching, PnP and the estimator."""

from ockd_ros.pose.estimator import (
    EstimateTiming,
    Estimator,
    EstimatorConfig,
    ObjectPose,
    default_config,
)
from ockd_ros.pose.matching import MatchingConfig
from ockd_ros.pose.pnp import PnPConfig
from ockd_ros.pose.templates import TemplateBank, TemplateConfig

__all__ = [
    "EstimateTiming",
    "Estimator",
    "EstimatorConfig",
    "MatchingConfig",
    "ObjectPose",
    "PnPConfig",
    "TemplateBank",
    "TemplateConfig",
    "default_config",
]
