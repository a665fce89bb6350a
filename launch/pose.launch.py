"""Start the ockd_ros node with its parameter file, optionally RViz.

ros2 launch ockd_ros pose.launch.py image:=/camera/color/image_raw rviz:=true
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("ockd_ros")
    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=os.path.join(share, "config", "pose.yaml"),
            description="YAML file with the node's parameters",
        ),
        DeclareLaunchArgument("image", default_value="image", description="input image topic"),
        DeclareLaunchArgument(
            "camera_info", default_value="camera_info", description="input CameraInfo topic"
        ),
        DeclareLaunchArgument(
            "namespace", default_value="", description="namespace of the node and of RViz"
        ),
        DeclareLaunchArgument("device", default_value="auto", description="torch device"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="use /clock (bag playback)"
        ),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz"),
        DeclareLaunchArgument(
            "camera_frame",
            default_value="camera_color_optical_frame",
            description="RViz fixed frame: the camera's optical frame (the images' frame_id)",
        ),
    ]
    node = Node(
        package="ockd_ros",
        executable="pose_node",
        name="ockd_pose_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "device": LaunchConfiguration("device"),
                "use_sim_time": LaunchConfiguration("use_sim_time"),
            },
        ],
        remappings=[
            ("image", LaunchConfiguration("image")),
            ("camera_info", LaunchConfiguration("camera_info")),
        ],
        output="screen",
    )
    # config/ockd.rviz names its topics relative, so RViz in the node's namespace finds them.
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        namespace=LaunchConfiguration("namespace"),
        arguments=[
            "-d",
            os.path.join(share, "config", "ockd.rviz"),
            "-f",
            LaunchConfiguration("camera_frame"),
        ],
        condition=IfCondition(LaunchConfiguration("rviz")),
        output="screen",
    )
    return LaunchDescription([*arguments, node, rviz])
