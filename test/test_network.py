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
        NetworkConfig(intra_fixed_dim=8),  # a fixed part needs the hypercolumn
        NetworkConfig(descriptor_skips=(4,), intra_fixed_dim=64),  # nothing left to learn
        NetworkConfig(descriptor_skips=(4,), intra_fixed_dim=8, intra_fixed_weight=1.0),
    ],
)
def test_invalid_configs_are_refused(conf):
    with pytest.raises(ValueError):
        OCKDNet(conf)


def test_a_fixed_intra_part_is_the_hypercolumn_alone_and_weighs_as_configured():
    """With `intra_fixed_dim`, the fixed part ignores the decoder, each part is unit length
    times √weight, and the whole descriptor is unit length."""
    conf = NetworkConfig(
        descriptor_skips=(4, 8), intra_dim=48, intra_fixed_dim=32, intra_fixed_weight=0.7
    )
    torch.manual_seed(0)
    net = OCKDNet(conf).eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = net(image).desc_intra
        torch.nn.init.normal_(net.descriptor_head.weight)  # the decoder's share changes
        after = net(image).desc_intra
    assert net.descriptor_head.out_channels == 48 - 32 + conf.inter_dim
    torch.testing.assert_close(after[:, :32], before[:, :32])
    assert not torch.allclose(after[:, 32:], before[:, 32:])
    ones = torch.ones_like(after[:, 0])
    torch.testing.assert_close(after[:, :32].norm(dim=1), ones * 0.7**0.5)
    torch.testing.assert_close(after[:, 32:].norm(dim=1), ones * 0.3**0.5)
    torch.testing.assert_close(after.norm(dim=1), ones)


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


# torchvision's ResNet-18 (`torchvision.models.resnet18().state_dict()`), written out from the
# published architecture, not from our encoder: module → weight shape, or channels for a
# BatchNorm (weight, bias, running_mean, running_var, num_batches_tracked).
TORCHVISION_RESNET18 = {
    "conv1": (64, 3, 7, 7),
    "bn1": 64,
    "layer1.0.conv1": (64, 64, 3, 3),
    "layer1.0.bn1": 64,
    "layer1.0.conv2": (64, 64, 3, 3),
    "layer1.0.bn2": 64,
    "layer1.1.conv1": (64, 64, 3, 3),
    "layer1.1.bn1": 64,
    "layer1.1.conv2": (64, 64, 3, 3),
    "layer1.1.bn2": 64,
    "layer2.0.conv1": (128, 64, 3, 3),
    "layer2.0.bn1": 128,
    "layer2.0.conv2": (128, 128, 3, 3),
    "layer2.0.bn2": 128,
    "layer2.0.downsample.0": (128, 64, 1, 1),
    "layer2.0.downsample.1": 128,
    "layer2.1.conv1": (128, 128, 3, 3),
    "layer2.1.bn1": 128,
    "layer2.1.conv2": (128, 128, 3, 3),
    "layer2.1.bn2": 128,
    "layer3.0.conv1": (256, 128, 3, 3),
    "layer3.0.bn1": 256,
    "layer3.0.conv2": (256, 256, 3, 3),
    "layer3.0.bn2": 256,
    "layer3.0.downsample.0": (256, 128, 1, 1),
    "layer3.0.downsample.1": 256,
    "layer3.1.conv1": (256, 256, 3, 3),
    "layer3.1.bn1": 256,
    "layer3.1.conv2": (256, 256, 3, 3),
    "layer3.1.bn2": 256,
    "layer4.0.conv1": (512, 256, 3, 3),
    "layer4.0.bn1": 512,
    "layer4.0.conv2": (512, 512, 3, 3),
    "layer4.0.bn2": 512,
    "layer4.0.downsample.0": (512, 256, 1, 1),
    "layer4.0.downsample.1": 512,
    "layer4.1.conv1": (512, 512, 3, 3),
    "layer4.1.bn1": 512,
    "layer4.1.conv2": (512, 512, 3, 3),
    "layer4.1.bn2": 512,
    "fc": (1000, 512),
}


def _torchvision_resnet18_state() -> dict[str, torch.Tensor]:
    """A state dict with torchvision's ResNet-18 names and shapes, every tensor distinct."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for module, shape in TORCHVISION_RESNET18.items():
        if isinstance(shape, int):
            for buffer in ("weight", "bias", "running_mean", "running_var"):
                state[f"{module}.{buffer}"] = torch.randn(shape, generator=generator)
            state[f"{module}.num_batches_tracked"] = torch.randint(1, 10**6, (), dtype=torch.long)
        else:
            state[f"{module}.weight"] = torch.randn(shape, generator=generator)
    state["fc.bias"] = torch.randn(1000, generator=generator)
    return state


@pytest.mark.parametrize("stages", [3, 4])
def test_torchvision_resnet18_weights_load_under_their_own_names(stages):
    state = _torchvision_resnet18_state()
    assert len(state) == 122  # len(torchvision.models.resnet18().state_dict())
    model = OCKDNet(NetworkConfig(encoder_stages=stages))
    model.load_torchvision_encoder(state)
    beyond = (*(f"layer{n}." for n in range(stages + 1, 5)), "fc.")  # not in the encoder
    expected = {key for key in state if not key.startswith(beyond)}
    loaded = model.encoder.state_dict()
    assert set(loaded) == expected  # everything up to the last stage, no classifier
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)
    encoder = model.encoder
    assert torch.equal(
        encoder.layer2[0].downsample[0].weight, state["layer2.0.downsample.0.weight"]
    )
    assert torch.equal(encoder.layer3[1].bn2.running_var, state["layer3.1.bn2.running_var"])
    assert encoder.layer3[1].bn2.num_batches_tracked == state["layer3.1.bn2.num_batches_tracked"]


def test_a_state_dict_without_a_resnet18_key_is_refused():
    state = _torchvision_resnet18_state()
    del state["layer3.1.bn2.running_mean"]
    with pytest.raises(ValueError, match=r"not a ResNet-18.*layer3\.1\.bn2\.running_mean"):
        OCKDNet().load_torchvision_encoder(state)
    with pytest.raises(ValueError, match="do not fit a efficientnet_lite0"):
        OCKDNet(NetworkConfig(encoder="efficientnet_lite0")).load_torchvision_encoder(
            _torchvision_resnet18_state()
        )
