"""The main demo, end to end through ROS 2: a synthetic bag of default objects is played over
DDS into the real pose node (a subprocess, as `ros2 run` starts it), the poses it publishes are
collected and scored against the bag's ground truth.

    python -m ockd_ros.ros.bag_demo --out outputs/demo

Steps: record (or reuse) `OUT/synthetic` with `ockd-bag record-synthetic`; evaluate it offline
with `ockd-bag eval` (report, overlays, and the template banks land in the cache); start the
node on a private ROS_DOMAIN_ID; publish each frame's CameraInfo and Image at `rate`; print per
object: frames with the object visible, found, median ADD-S, recall at 10 % of the diameter,
median latency from publishing the image to receiving the pose.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.qos import QoSProfile

from ockd_ros.bags import (
    BagEvalConfig,
    BagSource,
    SyntheticBagConfig,
    evaluate_bag,
    pose_from_message,
    record_synthetic,
    stamp_ns,
)
from ockd_ros.eval.metrics import adds_error
from ockd_ros.features import BACKENDS
from ockd_ros.meshes import load_object
from ockd_ros.pose import default_config
from ockd_ros.ros.domain import private_domain
from ockd_ros.ros.peer import CameraPublisher, Peer

READY_TIMEOUT = 600.0  # seconds: a first run builds the template banks


@dataclass(frozen=True)
class BagDemoConfig:
    objects: tuple[str, ...] = ("cream_cheese", "ketchup", "macaroni_and_cheese")
    frames: int = 20
    rate: float = 2.0  # Hz of playback: slow enough for the node to answer most frames on a CPU
    backends: tuple[str, ...] = ("ockd", "sift")  # the network, then the baseline, same frames
    seed: int = 0


def main(conf: BagDemoConfig, out_dir: Path) -> Path:
    """Run the demo; returns the last backend's offline report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    bag = out_dir / "synthetic"
    if not bag.exists():
        print(f"recording {bag} ...")
        record_synthetic(SyntheticBagConfig(objects=conf.objects, frames=conf.frames,
                                            seed=conf.seed), bag)  # fmt: skip
    reports = []
    for backend in conf.backends:
        evaluation = out_dir / f"eval_{backend}_{time.strftime('%Y%m%d_%H%M%S')}"
        offline = evaluate_bag(
            BagEvalConfig(objects=conf.objects, estimator=default_config(backend)),
            bag,
            evaluation,
        )
        log_path = out_dir / f"node_{backend}.log"
        received, published = play_through_node(conf, backend, bag, log_path)
        _print_table(conf, backend, node_results(conf, bag, received, published), len(published))
        print(f"offline report: {offline.report}")
        overlays = sorted(evaluation.glob("*overlay*.png"))
        print(f"overlays: {', '.join(str(p) for p in overlays)}")
        print(f"node log: {log_path}")
        reports.append(offline.report)
    return reports[-1]


def play_through_node(
    conf: BagDemoConfig,
    backend: str,
    bag: Path,
    log_path: Path,
    parameters: tuple[str, ...] = (),
):
    """Publish the bag into a node subprocess started with `backend` and further `parameters`
    (`name:=value`); returns the received poses per object and the publish time per stamp."""
    env = os.environ | {
        "ROS_DOMAIN_ID": str(private_domain("demo")),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
    }
    os.environ.update(env)  # this process joins the same private domain
    objects = "[" + ",".join(conf.objects) + "]"
    command = [sys.executable, "-m", "ockd_ros.ros.node", "--ros-args", "-p", f"objects:={objects}",
               "-p", f"backend:={backend}", "-p", "qos:=reliable"]  # fmt: skip
    for parameter in parameters:
        command += ["-p", parameter]
    with log_path.open("w") as log:
        node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            return _publish_bag(conf, bag, node, log_path)
        finally:
            node.terminate()
            node.wait(timeout=20)


def _publish_bag(conf: BagDemoConfig, bag: Path, node: subprocess.Popen, log_path: Path):
    received: dict[str, list[tuple[PoseStamped, float]]] = {name: [] for name in conf.objects}
    published: dict[int, float] = {}
    with Peer("ockd_bag_demo") as peer:
        camera = CameraPublisher(peer.node, QoSProfile(depth=5))
        for name in conf.objects:
            peer.node.create_subscription(
                PoseStamped, f"object_poses/{name}",
                lambda msg, n=name: received[n].append((msg, time.monotonic())), 10,
            )  # fmt: skip
        peer.spin_until(lambda: "ready in" in log_path.read_text() or node.poll() is not None,
                        READY_TIMEOUT)  # fmt: skip
        if node.poll() is not None:
            raise RuntimeError(f"the node exited: see {log_path}")
        peer.spin_until(camera.connected, 30.0)
        with BagSource(bag) as source:
            for frame in source.frames():
                camera.publish(frame.rgb, frame.intrinsics.K, frame.stamp, frame.frame_id)
                published[frame.stamp] = time.monotonic()
                peer.spin_until(lambda: False, 1.0 / conf.rate)
        peer.spin_until(lambda: False, 5.0)  # the last answers
    return received, published


@dataclass(frozen=True)
class ObjectResult:
    """What the node published for one object of the bag."""

    visible: int  # frames with the object in the ground truth
    found: int  # poses received
    median_adds: float  # metres, nan without poses
    recall: float  # share of received poses with ADD-S < 10 % of the diameter
    latency_ms: float  # median, publish → pose received


def node_results(conf: BagDemoConfig, bag: Path, received, published) -> dict[str, ObjectResult]:
    """Per object, the poses the node published scored against the bag's ground truth."""
    truth: dict[str, dict[int, np.ndarray]] = {name: {} for name in conf.objects}
    with BagSource(bag) as source:
        for frame in source.frames():
            for name, T in frame.ground_truth:
                truth.setdefault(name, {})[frame.stamp] = T
    results = {}
    for name in conf.objects:
        obj = load_object(name)
        points = obj.sample_points(500)
        errors, latencies = [], []
        for msg, arrival in received[name]:
            stamp = stamp_ns(msg)
            latencies.append(1000 * (arrival - published.get(stamp, arrival)))
            if stamp in truth[name]:
                T = pose_from_message(msg)
                T_true = truth[name][stamp]
                errors.append(
                    adds_error(T[:3, :3], T[:3, 3], T_true[:3, :3], T_true[:3, 3], points)
                )
        results[name] = ObjectResult(
            visible=len(truth[name]),
            found=len(received[name]),
            median_adds=float(np.median(errors)) if errors else float("nan"),
            recall=float(np.mean(np.asarray(errors) < 0.1 * obj.diameter)) if errors else 0.0,
            latency_ms=float(np.median(latencies)) if latencies else float("nan"),
        )
    return results


def _print_table(
    conf: BagDemoConfig, backend: str, results: dict[str, ObjectResult], frames: int
) -> None:
    print(f"\n{frames} frames played at {conf.rate:g} Hz into the node ({backend})")
    print(f"{'object':<22}{'visible':>8}{'found':>7}{'ADD-S mm':>10}{'<0.1d':>7}{'latency ms':>12}")
    for name, r in results.items():
        print(f"{name:<22}{r.visible:>8}{r.found:>7}{1000 * r.median_adds:>10.1f}"
              f"{r.recall:>7.0%}{r.latency_ms:>12.0f}")  # fmt: skip


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--backends", nargs="+", default=list(BagDemoConfig.backends),
                        choices=sorted(BACKENDS))  # fmt: skip
    parser.add_argument("--frames", type=int, default=BagDemoConfig.frames)
    parser.add_argument("--rate", type=float, default=BagDemoConfig.rate)
    args = parser.parse_args(argv)
    conf = BagDemoConfig(frames=args.frames, rate=args.rate, backends=tuple(args.backends))
    main(conf, args.out)


if __name__ == "__main__":
    cli()
