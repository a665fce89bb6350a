"""The main demo, end to end through ROS 2: a synthetic bag of default objects is played over
DDS into the real pose node (a subprocess, as `ros2 run` starts it), the poses it publishes are
collected and scored against the bag's ground truth.

    python -m ockd_ros.ros.bag_demo --out outputs/demo

Steps: record (or reuse) `OUT/synthetic` with `ockd-bag record-synthetic`; evaluate it offline
with `ockd-bag eval` (report, overlays, and the template banks land in the cache); start the
node on a private ROS_DOMAIN_ID; publish each frame's CameraInfo and Image at `rate`; score the
poses the node published with the evaluator's rule (`ockd_ros.eval.evaluate`, as `ockd-bag
eval` scores) and print per object: found / visible (frames with the object in view and a pose
for it), the median ADD(-S) (ADD-S for a symmetric object, ADD otherwise), recall (the share of
visible instances within 10 % of the diameter) and the median latency from publishing the image
to receiving the pose.
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
from ockd_ros.command_line import one_line_errors
from ockd_ros.config import merge_config
from ockd_ros.eval.evaluate import Target, score_instances
from ockd_ros.eval.report import InstanceResult, summarize
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
    templates: int = 96  # template views per object, offline and in the node


def main(conf: BagDemoConfig, out_dir: Path) -> dict[str, dict[str, ObjectResult]]:
    """Run the demo; returns per backend what the node published, scored (`node_results`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    bag = out_dir / "synthetic"
    if not bag.exists():
        print(f"recording {bag} ...")
        record_synthetic(SyntheticBagConfig(objects=conf.objects, frames=conf.frames,
                                            seed=conf.seed), bag)  # fmt: skip
    scores = {}
    for backend in conf.backends:
        evaluation = out_dir / f"eval_{backend}_{time.strftime('%Y%m%d_%H%M%S')}"
        estimator = merge_config(default_config(backend), {"templates": {"views": conf.templates}})
        offline = evaluate_bag(
            BagEvalConfig(objects=conf.objects, estimator=estimator), bag, evaluation
        )
        log_path = out_dir / f"node_{backend}.log"
        views = f"templates_per_object:={conf.templates}"
        received, published = play_through_node(conf, backend, bag, log_path, (views,))
        scores[backend] = node_results(conf, bag, received, published)
        _print_table(conf, backend, scores[backend], len(published))
        print(f"offline report: {offline.report}")
        overlays = sorted(evaluation.glob("*overlay*.png"))
        print(f"overlays: {', '.join(str(p) for p in overlays)}")
        print(f"node log: {log_path}")
    return scores


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
                if frame.skipped:  # nothing a camera driver would publish
                    continue
                if not published:  # discovery may still be matching the CameraInfo topic
                    size = (frame.rgb.shape[1], frame.rgb.shape[0])
                    camera.publish_info(frame.intrinsics.K, size, frame.stamp, frame.frame_id)
                    peer.spin_until(lambda: False, 1.0)
                camera.publish(frame.rgb, frame.intrinsics.K, frame.stamp, frame.frame_id)
                published[frame.stamp] = time.monotonic()
                peer.spin_until(lambda: False, 1.0 / conf.rate)
        peer.spin_until(lambda: False, 5.0)  # the last answers
    return received, published


@dataclass(frozen=True)
class ObjectResult:
    """What the node published for one object of the bag (or for all, pooled), scored as the
    evaluator scores: each ground-truth instance against the pose of the image's stamp, by
    ADD-S for a symmetric object and ADD otherwise (`score_instances`, `summarize`)."""

    symmetric: bool
    visible: int  # ground-truth instances: frames with the object in view
    found: int  # of those, with a pose from the node
    median_error: float  # metres: median ADD(-S) of the found instances, nan without any
    recall: float  # % of the visible instances with ADD(-S) < 10 % of the diameter
    latency_ms: float  # median, publish → pose received; nan without poses
    received: int  # poses received, in frames with the object in view or not


ALL = "all"  # the key of the pooled result


def node_results(conf: BagDemoConfig, bag: Path, received, published) -> dict[str, ObjectResult]:
    """Per object, then pooled under `ALL`, the poses the node published (`received`: per object,
    (PoseStamped, arrival time) pairs; `published`: the time each stamp was sent) scored against
    the bag's ground truth."""
    targets = {name: Target.from_mesh(load_object(name), k) for k, name in enumerate(conf.objects)}
    poses_at: dict[int, dict[str, np.ndarray]] = {}
    for name, messages in received.items():
        for msg, _ in messages:
            poses_at.setdefault(stamp_ns(msg), {})[name] = pose_from_message(msg)
    instances: list[InstanceResult] = []
    with BagSource(bag) as source:
        for frame in source.frames():
            if not frame.skipped:  # never published
                poses = poses_at.get(frame.stamp, {})
                instances += score_instances(poses, frame.ground_truth, targets, im_id=frame.im_id)
    latencies = {
        name: [1000 * (arrival - published.get(stamp_ns(msg), arrival)) for msg, arrival in got]
        for name, got in received.items()
    }
    results = {
        name: _result([r for r in instances if r.name == name], latencies.get(name, []))
        for name in conf.objects
    }
    results[ALL] = _result(instances, [ms for values in latencies.values() for ms in values])
    return results


def _result(instances: list[InstanceResult], latencies: list[float]) -> ObjectResult:
    if not instances:
        return ObjectResult(False, 0, 0, float("nan"), 0.0, _median(latencies), len(latencies))
    pooled = summarize(instances)[-1]  # the summary of all the instances given
    errors = [r.add_or_adds for r in instances if r.found]
    return ObjectResult(
        symmetric=all(r.symmetric for r in instances),
        visible=pooled.instances,
        found=pooled.found,
        median_error=_median(errors),
        recall=pooled.recall,
        latency_ms=_median(latencies),
        received=len(latencies),
    )


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def _print_table(
    conf: BagDemoConfig, backend: str, results: dict[str, ObjectResult], frames: int
) -> None:
    print(
        f"\n{frames} frames played at {conf.rate:g} Hz into the node ({backend}); ADD-S for "
        "symmetric objects, ADD for the others; recall: ADD(-S) below 10 % of the diameter"
    )
    print(_row(("object", "found/visible", "metric", "median mm", "recall %", "latency ms")))
    for name, r in results.items():
        metric = "" if name == ALL else ("ADD-S" if r.symmetric else "ADD")
        median, latency = f"{1000 * r.median_error:.1f}", f"{r.latency_ms:.0f}"
        print(_row((name, f"{r.found}/{r.visible}", metric, median, f"{r.recall:.0f}", latency)))


def _row(cells: tuple[str, ...], widths=(22, 14, 8, 11, 10, 12)) -> str:
    first, *rest = cells
    return f"{first:<{widths[0]}}" + "".join(
        f"{cell:>{width}}" for cell, width in zip(rest, widths[1:], strict=True)
    )


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--backends", nargs="+", default=list(BagDemoConfig.backends),
                        choices=sorted(BACKENDS))  # fmt: skip
    parser.add_argument("--frames", type=int, default=BagDemoConfig.frames)
    parser.add_argument("--rate", type=float, default=BagDemoConfig.rate)
    args = parser.parse_args(argv)
    conf = BagDemoConfig(frames=args.frames, rate=args.rate, backends=tuple(args.backends))
    with one_line_errors("bag_demo"):
        main(conf, args.out)


if __name__ == "__main__":
    cli()
