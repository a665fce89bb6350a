"""ockd_ros: 6D object pose from one RGB camera with object-centric keypoints learned in simulation.

The core (model, features, rendering, pose, metrics) imports no ROS; `ockd_ros.ros` is the thin
ROS 2 layer.
"""

__version__ = "0.1.0"
