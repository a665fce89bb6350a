"""`colcon build` of this package installs what `ros2 run` and `ros2 launch` need."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


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
