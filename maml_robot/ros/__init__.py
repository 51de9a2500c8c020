"""ROS 2 nodes (thin layers over maml_robot.online and maml_robot.sim) and their helpers."""
