import cv2

from ockd_ros.demo import DemoConfig, main


def test_demo_writes_an_overlay_with_one_panel_per_backend(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # banks built from scratch
    conf = DemoConfig(objects=("cream_cheese",), size=(320, 240), device="cpu", templates=12)
    overlay = main(conf, tmp_path)
    image = cv2.imread(str(overlay))
    assert image.shape == (240, 2 * 320, 3)
    printed = capsys.readouterr().out
    assert "cream_cheese" in printed and str(overlay) in printed
    assert "ockd ADD-S" in printed and "sift ADD-S" in printed
