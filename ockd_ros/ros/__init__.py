"""The thin ROS 2 layer: node, parameters, message construction. Only this package imports rclpy."""
