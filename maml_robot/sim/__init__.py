"""PyBullet simulation of the shipped robots: knows nothing of gymnasium, torch or ROS."""
