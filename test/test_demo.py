import cv2

from ockd_ros.demo import DemoConfig, main


def test_demo_writes_an_overlay_with_one_panel_per_backend(tmp_path, capsys):
    conf = DemoConfig(objects=("ketchup",), size=(320, 240), device="cpu", repeats=1)
    overlay = main(conf, tmp_path)
    image = cv2.imread(str(overlay))
    assert image.shape == (240, 2 * 320, 3)
    printed = capsys.readouterr().out
    assert "ockd" in printed and "sift" in printed and str(overlay) in printed
