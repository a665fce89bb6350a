from dataclasses import replace

import numpy as np
import pytest
import torch

from ockd_ros.features import BACKENDS, Features, create_extractor
from ockd_ros.features.ockd import (
    OckdConfig,
    OckdExtractor,
    detect_keypoints,
    grid_keypoints,
    object_mask,
    sample_descriptors,
)
from ockd_ros.model.network import NetworkConfig, OCKDNet

SMALL = NetworkConfig(decoder_channels=(32, 16))


def _map_with_peaks(peaks, size=(40, 50), base=0.2):
    reliability = torch.full(size, base)
    for (x, y), value in peaks.items():
        reliability[y, x] = value
    return reliability


def test_detect_finds_known_peaks_strongest_first():
    peaks = {(10, 12): 2.0, (30, 20): 3.0, (45, 35): 1.6, (5, 30): 1.2}  # last is below r_thr
    keypoints, scores = detect_keypoints(_map_with_peaks(peaks), 1.5, 1, 100, 0)
    assert keypoints.tolist() == [[30, 20], [10, 12], [45, 35]]
    assert scores.tolist() == pytest.approx([3.0, 2.0, 1.6])


def test_nms_keeps_one_of_two_neighbours():
    peaks = {(10, 10): 2.0, (11, 10): 1.9, (20, 10): 1.8}
    keypoints, _ = detect_keypoints(_map_with_peaks(peaks), 1.5, 1, 100, 0)
    assert keypoints.tolist() == [[10, 10], [20, 10]]
    keypoints, _ = detect_keypoints(_map_with_peaks(peaks), 1.5, 0, 100, 0)
    assert len(keypoints) == 3  # no suppression at radius 0


def test_top_k_and_border():
    peaks = {(x, 20): 2.0 + x / 100 for x in range(2, 48, 4)}
    keypoints, _ = detect_keypoints(_map_with_peaks(peaks), 1.5, 1, 3, 0)
    assert keypoints[:, 0].tolist() == [46, 42, 38]
    keypoints, _ = detect_keypoints(_map_with_peaks(peaks), 1.5, 1, 100, 4)
    assert keypoints[:, 0].min() >= 4 and keypoints[:, 0].max() < 46


def test_grid_keypoints_cover_the_image_evenly_strongest_first():
    reliability = torch.rand(30, 41)
    keypoints, scores = grid_keypoints(reliability, 4, 3)
    xs, ys = keypoints[:, 0].unique(), keypoints[:, 1].unique()
    assert len(keypoints) == len(xs) * len(ys)
    assert set(torch.diff(xs).tolist()) == {4.0} and set(torch.diff(ys).tolist()) == {4.0}
    # Inside the border, and centred: the margins left and right differ by less than a step.
    assert xs.min() >= 3 and xs.max() <= 41 - 1 - 3 and ys.min() >= 3 and ys.max() <= 30 - 1 - 3
    assert abs((xs.min() - 3) - (41 - 1 - 3 - xs.max())) <= 1
    assert torch.all(scores[:-1] >= scores[1:])
    torch.testing.assert_close(scores, reliability[keypoints[:, 1].long(), keypoints[:, 0].long()])


def test_grid_extractor_ignores_the_detector():
    model = OCKDNet(SMALL)
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    grid = OckdExtractor(OckdConfig(device="cpu", grid_stride=8, max_keypoints=1), model=model)
    features = grid.extract(image)
    assert len(features) == len(grid_keypoints(torch.zeros(48, 64), 8, 4)[0]) > 1
    with pytest.raises(ValueError, match="invalid extractor config"):
        OckdExtractor(OckdConfig(device="cpu", grid_stride=-1), model=model)


@pytest.mark.parametrize("grid_stride", [0, 4])
def test_masks_keep_the_keypoints_inside_with_the_same_descriptors(grid_stride):
    model = OCKDNet(SMALL)
    with torch.no_grad():
        model.reliability_head.bias.fill_(3.0)  # the detector fires everywhere
    conf = OckdConfig(device="cpu", grid_stride=grid_stride, max_keypoints=500, runtime="torch")
    extractor = OckdExtractor(conf, model=model)
    images = np.random.default_rng(1).integers(0, 255, (2, 64, 96, 3), dtype=np.uint8)
    masks = [np.zeros((64, 96), bool), np.zeros((64, 96), bool)]
    masks[0][10:40, 20:70] = True
    masks[1][30:, :50] = True
    for every, masked, mask in zip(
        extractor.extract_batch(images), extractor.extract_batch(images, masks), masks, strict=True
    ):
        pixels = every.keypoints.round().astype(int)
        inside = every.select(np.flatnonzero(mask[pixels[:, 1], pixels[:, 0]]))
        assert 0 < len(masked) < len(every)
        for name in ("keypoints", "scores", "desc_intra", "desc_inter"):
            np.testing.assert_array_equal(getattr(masked, name), getattr(inside, name))
    with pytest.raises(ValueError, match="one H×W mask per image"):
        extractor.extract_batch(images, masks[:1])


def test_detect_refuses_batched_maps():
    with pytest.raises(ValueError, match="H×W"):
        detect_keypoints(torch.zeros(1, 8, 8), 1.5, 1, 10, 0)


def test_sampling_at_cell_centres_returns_the_cell_descriptor():
    desc = torch.nn.functional.normalize(torch.randn(8, 5, 6), dim=0)  # D×h×w, stride 4
    cells = torch.tensor([[0, 0], [5, 4], [2, 3]])
    # centre of cell (cx, cy) at stride 4 is pixel 4·c + 1.5 (pixel centres at integers)
    keypoints = cells.float() * 4 + 1.5
    sampled = sample_descriptors(desc, keypoints, (24, 20))
    expected = desc[:, cells[:, 1], cells[:, 0]].t()
    torch.testing.assert_close(sampled, expected, atol=1e-5, rtol=0)
    assert sample_descriptors(desc, torch.zeros(0, 2), (24, 20)).shape == (0, 8)


def test_object_mask_selects_by_cosine():
    inter = np.eye(4, dtype=np.float32)[[0, 1, 0, 2]]
    np.testing.assert_array_equal(object_mask(inter, np.array([2, 0, 0, 0]), 0.5), [1, 0, 1, 0])
    with pytest.raises(ValueError, match="dims"):
        object_mask(inter, np.ones(3), 0.5)
    with pytest.raises(ValueError, match="non-zero"):
        object_mask(inter, np.zeros(4), 0.5)


@pytest.fixture(scope="module")
def confident_extractor():
    """A small network whose reliability head is biased above r_thr everywhere."""
    torch.manual_seed(0)
    model = OCKDNet(SMALL)
    with torch.no_grad():
        model.reliability_head.bias.fill_(3.0)
    return OckdExtractor(OckdConfig(device="cpu", max_keypoints=50), model=model)


def test_extractor_output_types_and_shapes(confident_extractor, rng):
    image = rng.integers(0, 255, (72, 96, 3), dtype=np.uint8)
    features = confident_extractor.extract(image)
    assert isinstance(features, Features)
    assert 0 < len(features) <= 50
    assert features.keypoints.dtype == np.float32 and features.keypoints.shape[1] == 2
    assert features.desc_intra.shape == (len(features), 64)
    assert features.desc_inter.shape == (len(features), 32)
    np.testing.assert_allclose(np.linalg.norm(features.desc_intra, axis=1), 1.0, atol=1e-5)
    assert np.all(features.scores >= 1.5) and np.all(np.diff(features.scores) <= 0)
    assert features.keypoints[:, 0].max() < 96 - 4 and features.keypoints[:, 1].max() < 72 - 4
    assert features.image_size == (96, 72)


def test_extractor_reference_descriptor_filters_keypoints(confident_extractor, rng):
    image = rng.integers(0, 255, (72, 96, 3), dtype=np.uint8)
    everything = confident_extractor.extract(image)
    reference = everything.desc_inter[0]
    selected = confident_extractor.extract(image, reference_inter=reference)
    assert 0 < len(selected) <= len(everything)
    assert np.all(selected.desc_inter @ reference >= 0.5 - 1e-6)


def _by_position(features: Features) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores and intra/inter descriptors in keypoint (y, x) order, not score order."""
    order = np.lexsort((features.keypoints[:, 0], features.keypoints[:, 1]))
    return features.scores[order], features.desc_intra[order], features.desc_inter[order]


def test_a_batch_gives_each_image_the_features_it_gets_alone(rng):
    torch.manual_seed(0)
    grid = OckdExtractor(OckdConfig(device="cpu", grid_stride=4), model=OCKDNet(SMALL))
    images = rng.integers(0, 255, (3, 72, 96, 3), dtype=np.uint8)
    batch = grid.extract_batch(list(images))
    assert len(batch) == 3
    for image, features in zip(images, batch, strict=True):
        alone = grid.extract(image)
        np.testing.assert_array_equal(np.sort(features.keypoints, 0), np.sort(alone.keypoints, 0))
        for got, expected in zip(_by_position(features), _by_position(alone), strict=True):
            np.testing.assert_allclose(got, expected, atol=1e-5)
    with pytest.raises(ValueError, match="one size"):
        grid.extract_batch([images[0], images[1][:64]])


def test_test_time_bn_adapts_to_the_image_and_keeps_the_trained_statistics(rng):
    torch.manual_seed(0)
    model = OCKDNet(SMALL)
    # "Training" statistics from bright images; the test image is dark, far from them.
    model.train()
    with torch.no_grad():
        for _ in range(20):
            model(0.6 + 0.4 * torch.rand(4, 3, 64, 64))
    trained = {key: value.clone() for key, value in model.state_dict().items()}
    image = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
    grid = OckdConfig(device="cpu", grid_stride=4)  # the same keypoints whatever the scores
    plain = OckdExtractor(grid, model=model).extract(image)
    adapted = OckdExtractor(replace(grid, test_time_bn=True), model=model).extract(image)
    np.testing.assert_array_equal(np.sort(adapted.keypoints, 0), np.sort(plain.keypoints, 0))
    plain_scores, plain_intra, plain_inter = _by_position(plain)
    adapted_scores, adapted_intra, adapted_inter = _by_position(adapted)
    assert np.abs(adapted_scores - plain_scores).mean() > 0.01
    # Unit descriptors: a mean cosine well below 1 means they moved, not just rounding.
    assert np.mean(np.sum(adapted_intra * plain_intra, axis=1)) < 0.99
    assert np.mean(np.sum(adapted_inter * plain_inter, axis=1)) < 0.99
    # The running statistics are the trained ones still, and plain inference is as before.
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value.float(), trained[key].float(), rtol=0, atol=0, msg=key)
    again = OckdExtractor(grid, model=model).extract(image)
    np.testing.assert_array_equal(again.desc_intra, plain.desc_intra)
    np.testing.assert_array_equal(again.scores, plain.scores)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((64, 64, 3), np.float32), "uint8"),
        (np.zeros((64, 64), np.uint8), "H×W×3"),
        (np.zeros((8, 8, 3), np.uint8), "too small"),
        ([[0]], "numpy"),
    ],
)
def test_bad_images_are_refused(backend, image, message):
    extractor = create_extractor(backend, {"device": "cpu"} if backend == "ockd" else None)
    with pytest.raises(ValueError, match=message):
        extractor.extract(image)


def test_sift_backend_returns_the_same_type(renderer, ketchup):
    from ockd_ros.samples import render_sample_scene

    scene = render_sample_scene(renderer, [ketchup], (320, 240))
    features = create_extractor("sift").extract(scene.rgb)
    assert isinstance(features, Features) and len(features) > 20
    assert features.desc_inter is None and features.desc_intra.shape == (len(features), 128)
    np.testing.assert_allclose(np.linalg.norm(features.desc_intra, axis=1), 1.0, atol=1e-5)
    assert np.all(np.diff(features.scores) <= 0)


def test_sift_on_a_blank_image_finds_nothing():
    features = create_extractor("sift").extract(np.full((64, 64, 3), 128, np.uint8))
    assert len(features) == 0 and features.desc_intra.shape == (0, 128)


def test_unknown_backend_and_config_keys():
    with pytest.raises(ValueError, match="unknown feature backend"):
        create_extractor("orb")
    with pytest.raises(ValueError, match="unknown SiftConfig keys"):
        create_extractor("sift", {"r_thr": 1.0})


def test_in_region_takes_the_nearest_pixel_and_clamps_to_the_image():
    keypoints = np.array([[1.4, 0.6], [1.6, 0.4], [-3.0, 2.0], [9.0, 9.0]], np.float32)
    features = Features(
        keypoints, np.ones(4, np.float32), np.eye(4, dtype=np.float32), None, (3, 3)
    )
    region = np.zeros((3, 3), bool)
    region[1, 1] = region[2, 0] = True
    np.testing.assert_array_equal(features.in_region(region), [True, False, True, False])


def test_in_image_undoes_the_window_offset_and_resize():
    # Pixel centres of a window resized ×2: window pixel u shows image point (u + 0.5) / 2 - 0.5.
    keypoints = np.array([[0.0, 0.0], [3.0, 1.0]], np.float32)
    features = Features(
        keypoints, np.ones(2, np.float32), np.eye(2, dtype=np.float32), None, (8, 4)
    )
    moved = features.in_image(10, 20, (64, 48), scale=2.0)
    np.testing.assert_allclose(moved.keypoints, [[9.75, 19.75], [11.25, 20.25]])
    assert moved.image_size == (64, 48) and moved.keypoints.dtype == np.float32
    np.testing.assert_allclose(
        features.in_image(10, 20, (64, 48)).keypoints, [[10.0, 20.0], [13.0, 21.0]]
    )
    with pytest.raises(ValueError, match="scale"):
        features.in_image(0, 0, (64, 48), scale=0.0)
