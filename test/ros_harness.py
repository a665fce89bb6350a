"""Run the node as a real subprocess (its installed console script, as `ros2 run` would) and talk
to it over real DDS on loopback from an in-process rclpy node."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ockd_ros.ros.peer import Peer

NODE_EXECUTABLE = Path(sys.executable).parent / "pose_node"


class NodeProcess:
    """The node executable with `--ros-args` parameters; its log goes to a file for assertions."""

    def __init__(
        self, log_path: Path, parameters: dict[str, object], remaps=(), env: dict | None = None
    ):
        args = [str(NODE_EXECUTABLE), "--ros-args", "--log-level", "ockd_pose_node:=debug"]
        for name, value in parameters.items():
            args += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
        for remap in remaps:
            args += ["-r", remap]
        self.log_path = log_path
        self._log = log_path.open("w")
        # Unbuffered logs, so a test can read what the node said while it still runs.
        env = os.environ | (env or {})
        env |= {"RCUTILS_LOGGING_BUFFERED_STREAM": "0", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class TestPeer(Peer):
    """The test process's rclpy node (a `Peer` polling every 50 ms)."""

    __test__ = False  # a helper, not a test class

    def __init__(self, name: str = "ockd_test_peer"):
        super().__init__(name, poll=0.05)
