"""The object-centric keypoint network and its checkpoint format."""

from ockd_ros.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ockd_ros.model.network import NetworkConfig, NetworkOutput, OCKDNet

__all__ = [
    "CheckpointError",
    "NetworkConfig",
    "NetworkOutput",
    "OCKDNet",
    "load_checkpoint",
    "save_checkpoint",
]
