"""argparse types shared by the commands: a bad number is refused with a message, not clamped."""

import argparse

from maml_robot.ros.domains import MAX_DOMAIN_ID


def positive_int(text: str) -> int:
    """Parse an integer >= 1 (thread and worker counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected an integer >= 1, got {text!r}') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected an integer >= 1, got {value}')
    return value


def domain_id(text: str) -> int:
    """Parse a ROS_DOMAIN_ID: an integer in [0, MAX_DOMAIN_ID]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a ROS_DOMAIN_ID (integer in 0..'
                                         f'{MAX_DOMAIN_ID}), got {text!r}') from None
    if not 0 <= value <= MAX_DOMAIN_ID:
        raise argparse.ArgumentTypeError(f'ROS_DOMAIN_ID must be in 0..{MAX_DOMAIN_ID} '
                                         f'(0..101 is safe on Linux), got {value}')
    return value
