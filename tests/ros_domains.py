"""
ROS_DOMAIN_ID allocator of the test suite: every ROS test gets a domain nobody else uses.

``domain_id()`` takes it from ``maml_robot.ros.domains`` (the one allocator, which the benchmarks
use too): a lock file per domain under ``/tmp/maml_robot_ros_domains``, held for the life of the
test process, so no other test of this run and no other run or benchmark on this machine gets
it, and never handed out twice in one process. tests/test_ros_domains.py fails on a test module
that picks a domain any other way; test_ros_nodes used 120..219 before this allocator.
"""

from maml_robot.ros.domains import ALLOCATOR, domain_id

__all__ = ['ALLOCATOR', 'domain_id']
