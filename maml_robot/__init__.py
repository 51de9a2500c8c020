"""maml_robot: meta-reinforcement learning for robots whose dynamics change."""

__version__ = '0.1.0'
