"""Encoder choice and ImageNet initialisation (EfficientNet-Lite0 from its installed package)."""

import pytest
import torch
import torch.nn.functional as F
from skimage import data

from ockd_ros.model import NetworkConfig, OCKDNet, load_checkpoint, save_checkpoint
from ockd_ros.model.encoders import ENCODERS, INPUT_NORMALISATION, EfficientNetLite0
from ockd_ros.model.pretrained import PretrainedWeightsError, load_pretrained, weights_path


def _installed_lite0_weights():
    try:
        return weights_path("efficientnet_lite0"), ""
    except PretrainedWeightsError as error:  # the training extra is not installed
        return None, str(error)


LITE0_WEIGHTS, LITE0_MISSING = _installed_lite0_weights()
needs_lite0 = pytest.mark.skipif(LITE0_WEIGHTS is None, reason=LITE0_MISSING)
CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat


def _imagenet_input(image, encoder="efficientnet_lite0", size=224):
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in INPUT_NORMALISATION[encoder])
    return (tensor - mean) / std


@needs_lite0
def test_the_loaded_lite0_weights_are_the_real_imagenet_ones():
    classifier = EfficientNetLite0(stages=4, classifier=True).eval()
    load_pretrained(classifier, "efficientnet_lite0")
    with torch.no_grad():
        top5 = classifier.classify(_imagenet_input(data.chelsea())).topk(5).indices[0].tolist()
    assert CAT_CLASSES & set(top5), top5


@needs_lite0
def test_every_tensor_of_the_cut_encoder_is_loaded():
    encoder = EfficientNetLite0(stages=3)
    torch.manual_seed(0)
    for parameter in encoder.parameters():
        torch.nn.init.normal_(parameter)
    load_pretrained(encoder, "efficientnet_lite0")
    state = torch.load(LITE0_WEIGHTS, map_location="cpu", weights_only=True)
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, state[key], msg=key)


@needs_lite0
def test_a_file_missing_an_encoder_tensor_is_refused_by_name(tmp_path):
    state = torch.load(LITE0_WEIGHTS, map_location="cpu", weights_only=True)
    del state["_blocks.3._depthwise_conv.weight"]
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(PretrainedWeightsError, match=r"_blocks\.3\._depthwise_conv\.weight"):
        load_pretrained(EfficientNetLite0(stages=3), "efficientnet_lite0", tmp_path / "cut.pth")


@needs_lite0
def test_a_misnamed_tensor_is_refused_by_name(tmp_path):
    state = torch.load(LITE0_WEIGHTS, map_location="cpu", weights_only=True)
    state["_blocks.2._squeeze.weight"] = torch.zeros(1)  # in a built block, but no such layer
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(PretrainedWeightsError, match=r"_blocks\.2\._squeeze\.weight"):
        load_pretrained(EfficientNetLite0(stages=3), "efficientnet_lite0", tmp_path / "odd.pth")


def test_a_corrupt_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a torch file")
    with pytest.raises(PretrainedWeightsError, match="cannot read ImageNet weights"):
        load_pretrained(EfficientNetLite0(stages=3), "efficientnet_lite0", path)


def test_an_encoder_without_installable_weights_is_named():
    with pytest.raises(PretrainedWeightsError, match="resnet18"):
        weights_path("resnet18")


@pytest.mark.parametrize("encoder", ENCODERS)
def test_each_encoder_builds_trains_a_step_and_round_trips(tmp_path, encoder):
    conf = NetworkConfig(encoder=encoder, decoder_channels=(32, 16), descriptor_skips=(4, 8, 16))
    torch.manual_seed(0)
    model = OCKDNet(conf)
    images = torch.rand(2, 3, 64, 96)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = model(images)
    loss = out.reliability.mean() - (out.desc_intra[0] * out.desc_intra[1]).sum(0).mean()
    loss.backward()
    optimiser.step()
    assert out.desc_intra.shape == (2, 64, 16, 24)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("encoder.") for k in changed)
    assert any(k.startswith("skip_head.") for k in changed)
    model.eval()
    path = save_checkpoint(model, tmp_path / f"{encoder}.pt")
    loaded = load_checkpoint(path)
    assert loaded.conf == conf
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).desc_inter, model(images).desc_inter)


def test_the_hypercolumn_alone_gives_the_initial_descriptor():
    """With skips, the decoder's share starts at zero: the descriptor is a projection of the
    encoder's features, so two pixels with the same hypercolumn get the same descriptor."""
    conf = NetworkConfig(encoder="efficientnet_lite0", descriptor_skips=(4, 8, 16))
    model = OCKDNet(conf).eval()
    assert torch.count_nonzero(model.descriptor_head.weight) == 0
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = model(image)
        projected = model.skip_head(model.hypercolumn(image))
    torch.testing.assert_close(out.desc_intra, F.normalize(projected[:, :64], dim=1))


def test_skips_must_be_encoder_strides():
    with pytest.raises(ValueError, match="descriptor_skips"):
        OCKDNet(NetworkConfig(descriptor_skips=(32,)))


def test_unknown_encoder_is_refused():
    with pytest.raises(ValueError, match="encoder must be one of"):
        OCKDNet(NetworkConfig(encoder="vgg16"))
