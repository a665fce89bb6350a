import pytest
import torch

from ockd_ros.model.network import NetworkConfig, OCKDNet, batch_statistics


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return OCKDNet().eval()


def test_output_shapes_and_normalisation(net):
    image = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        out = net(image)
    stride = net.conf.output_stride
    assert stride == 4
    assert out.reliability.shape == (2, 1, 96, 128)
    assert out.desc_intra.shape == (2, 64, 96 // stride, 128 // stride)
    assert out.desc_inter.shape == (2, 32, 96 // stride, 128 // stride)
    assert torch.all(out.reliability >= 0)
    for desc in (out.desc_intra, out.desc_inter):
        torch.testing.assert_close(desc.norm(dim=1), torch.ones_like(desc[:, 0]))


def test_odd_image_sizes_are_supported(net):
    with torch.no_grad():
        out = net(torch.rand(1, 3, 75, 101))
    assert out.reliability.shape[-2:] == (75, 101)
    assert out.desc_intra.shape[-2:] == (19, 26)  # ceil(75 / 4), ceil(101 / 4)


def test_decoder_depth_sets_the_output_stride():
    full = NetworkConfig(encoder_stages=3, decoder_channels=(64, 64, 32, 32))
    assert full.output_stride == 1
    out = OCKDNet(full).eval()(torch.rand(1, 3, 32, 32))
    assert out.desc_intra.shape[-2:] == (32, 32)


@pytest.mark.parametrize(
    "conf",
    [
        NetworkConfig(encoder_stages=0),
        NetworkConfig(decoder_channels=()),
        NetworkConfig(decoder_channels=(8, 8, 8, 8, 8)),
        NetworkConfig(inter_dim=0),
    ],
)
def test_invalid_configs_are_refused(conf):
    with pytest.raises(ValueError):
        OCKDNet(conf)


def test_wrong_input_shape_is_refused(net):
    with pytest.raises(ValueError, match="B×3×H×W"):
        net(torch.rand(3, 64, 64))


def test_batch_statistics_uses_the_image_and_never_updates_running_stats(net):
    image = torch.rand(1, 3, 64, 64) * 0.2  # far from the running statistics
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        plain = net(image).reliability
        with batch_statistics(net):
            adapted = net(image).reliability
    assert not torch.allclose(plain, adapted)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key], msg=key)
    assert not net.training  # modes restored
    with torch.no_grad():
        torch.testing.assert_close(net(image).reliability, plain)


def test_torchvision_encoder_weights_load_by_name(net):
    encoder_state = {
        key: torch.randn_like(value) if value.is_floating_point() else value
        for key, value in net.encoder.state_dict().items()
    }
    extra = {"fc.weight": torch.zeros(1000, 512), "layer4.0.conv1.weight": torch.zeros(1)}
    model = OCKDNet()
    model.load_torchvision_encoder(encoder_state | extra)
    torch.testing.assert_close(model.encoder.conv1.weight, encoder_state["conv1.weight"])
    with pytest.raises(ValueError, match="not a ResNet-18"):
        model.load_torchvision_encoder({"fc.weight": torch.zeros(1)})
