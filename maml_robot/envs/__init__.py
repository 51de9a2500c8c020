"""Gymnasium meta-environments; importing this module registers the maml_robot/* ids."""

import gymnasium

from maml_robot.envs.meta_env import MetaRobotEnv

ENV_IDS = {
    'maml_robot/Reacher-v0': 'reacher',
    'maml_robot/Cheetah-v0': 'cheetah',
    'maml_robot/Quadruped-v0': 'quadruped',
    'maml_robot/KukaReach-v0': 'kuka_reach',
}


def register_envs():
    """Register the env ids with gymnasium (idempotent)."""
    for env_id, scenario in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point='maml_robot.envs.meta_env:MetaRobotEnv',
                               kwargs={'scenario': scenario})


register_envs()

__all__ = ['ENV_IDS', 'MetaRobotEnv', 'register_envs']
