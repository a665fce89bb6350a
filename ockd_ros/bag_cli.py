"""`ockd-bag`: record synthetic bags, convert BOP scenes to bags, evaluate pose estimation on bags.

    ockd-bag record-synthetic --out bags/synthetic --objects cream_cheese ketchup --frames 30
    ockd-bag from-bop --dataset ../shared/data/lmo --out bags/lmo
    ockd-bag eval bags/synthetic --out outputs/bag_eval --backend sift
    ockd-bag eval bags/lmo --out outputs/lmo_bag --bop-dataset ../shared/data/lmo
    ockd-bag eval realsense_bag --out outputs/rs --objects ketchup \\
        --image-topic /camera/color/image_raw --camera-info-topic /camera/color/camera_info
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

import yaml

from ockd_ros.bags import (
    STORAGES,
    BagEvalConfig,
    BagTopics,
    BopBagConfig,
    SyntheticBagConfig,
    evaluate_bag,
    from_bop,
    record_synthetic,
)
from ockd_ros.command_line import one_line_errors, parse_size
from ockd_ros.eval.cli import add_estimator_arguments, estimator_config_from_args
from ockd_ros.pose.tracking import TrackingConfig


def _yaml_mapping(path: Path) -> dict:
    with path.open() as stream:
        data = yaml.safe_load(stream) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def _add_topic_arguments(parser: argparse.ArgumentParser, results: bool = False) -> None:
    defaults = BagTopics()
    parser.add_argument("--image-topic", default=defaults.image, help="sensor_msgs/Image topic")
    parser.add_argument("--camera-info-topic", default=defaults.camera_info)
    parser.add_argument("--gt-prefix", default=defaults.gt_prefix, help="+ object name")
    if results:
        parser.add_argument("--result-prefix", default=defaults.result_prefix, help="+ name")


def _topics(args: argparse.Namespace) -> BagTopics:
    return BagTopics(
        image=args.image_topic,
        camera_info=args.camera_info_topic,
        gt_prefix=args.gt_prefix,
        result_prefix=getattr(args, "result_prefix", BagTopics.result_prefix),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ockd-bag", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    record = commands.add_parser("record-synthetic", help="render a scene into a bag with truth")
    record.add_argument("--out", type=Path, required=True, help="new bag folder")
    record.add_argument("--objects", nargs="+", default=list(SyntheticBagConfig.objects))
    record.add_argument("--frames", type=int, default=SyntheticBagConfig.frames)
    record.add_argument("--size", type=parse_size, default=SyntheticBagConfig.size, help="WxH")
    record.add_argument("--rate", type=float, default=SyntheticBagConfig.rate, help="Hz")
    record.add_argument("--seed", type=int, default=SyntheticBagConfig.seed)
    record.add_argument("--storage", choices=list(STORAGES), default="sqlite3")
    record.add_argument("--scene-config", type=Path, help="YAML overrides of SceneConfig")
    _add_topic_arguments(record)

    bop = commands.add_parser("from-bop", help="convert a BOP split into a bag")
    bop.add_argument("--dataset", type=Path, required=True)
    bop.add_argument("--split", default="test")
    bop.add_argument("--out", type=Path, required=True, help="new bag folder")
    bop.add_argument("--scenes", type=int, nargs="+", default=[], help="scene ids (default all)")
    bop.add_argument("--max-frames", type=int)
    bop.add_argument("--rate", type=float, default=BopBagConfig.rate, help="Hz")
    bop.add_argument("--storage", choices=list(STORAGES), default="sqlite3")
    _add_topic_arguments(bop)

    ev = commands.add_parser("eval", help="estimate poses on every image, write results + report")
    ev.add_argument("bag", type=Path, help="rosbag2 folder, or a .db3 / .mcap file")
    ev.add_argument("--out", type=Path, required=True)
    ev.add_argument("--objects", nargs="+", default=[], help="names or mesh paths (default: gt)")
    ev.add_argument("--units", default="mm", help="units of mesh paths: m, cm or mm")
    ev.add_argument("--bop-dataset", default="", help="BOP folder: obj_XXXXXX are its models")
    ev.add_argument("--bop-split", default="test")
    ev.add_argument("--rectified", action="store_true", help="use CameraInfo P, no distortion")
    ev.add_argument("--max-frames", type=int)
    ev.add_argument("--overlays", type=int, default=BagEvalConfig.overlays)
    ev.add_argument("--storage", choices=list(STORAGES), default="sqlite3", help="results bag")
    ev.add_argument(
        "--no-tracking",
        action="store_true",
        help="search every frame in full instead of around the previous poses first",
    )
    ev.add_argument(
        "--tracking-zoom",
        action="store_true",
        help="with tracking: search each object's box resized to its templates' scale",
    )
    _add_topic_arguments(ev, results=True)
    add_estimator_arguments(ev)
    return parser


def cli(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    command = shlex.join(["ockd-bag", *(sys.argv[1:] if argv is None else argv)])
    with one_line_errors("ockd-bag"):
        if args.command == "record-synthetic":
            conf = SyntheticBagConfig(
                objects=tuple(args.objects),
                frames=args.frames,
                size=args.size,
                rate=args.rate,
                seed=args.seed,
                storage=args.storage,
                topics=_topics(args),
                scene=_yaml_mapping(args.scene_config) if args.scene_config else {},
            )
            print(f"bag: {record_synthetic(conf, args.out)}")
        elif args.command == "from-bop":
            conf = BopBagConfig(
                dataset=str(args.dataset),
                split=args.split,
                scenes=tuple(args.scenes),
                max_frames=args.max_frames,
                rate=args.rate,
                storage=args.storage,
                topics=_topics(args),
            )
            print(f"bag: {from_bop(conf, args.out)}")
        else:
            conf = BagEvalConfig(
                topics=_topics(args),
                objects=tuple(args.objects),
                units=args.units,
                bop_dataset=args.bop_dataset,
                bop_split=args.bop_split,
                rectified=args.rectified,
                max_frames=args.max_frames,
                overlays=args.overlays,
                storage=args.storage,
                estimator=estimator_config_from_args(args),
                tracking=TrackingConfig(enabled=not args.no_tracking, zoom=args.tracking_zoom),
            )
            result = evaluate_bag(conf, args.bag, args.out, command)
            print(result.report.read_text())
            print(f"report: {result.report}\nresults bag: {result.results_bag}")


if __name__ == "__main__":
    cli()
