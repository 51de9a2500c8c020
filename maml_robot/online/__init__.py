"""
ROS-free online adapter: act safely, collect live episodes, adapt off the control path.

``config`` holds the settings and the deployment contract, ``adapter`` the OnlineAdapter,
``loading`` the way from a checkpoint file to an adapter, ``rehearsal`` the online loop
without ROS. Everything is importable from here.
"""

from maml_robot.online.adapter import OnlineAdapter
from maml_robot.online.config import (AdapterSpec, Command, MODE_BAD_ACTION, MODE_BAD_OBS,
                                      MODE_ESTOP, MODE_FADE, MODE_POLICY, MODE_RAMP, MODE_STALE,
                                      OnlineConfig)
from maml_robot.online.loading import (fresh_checkpoint, load_adapter, params_fingerprint,
                                       resolve_checkpoint, scenario_of, SHIPPED_MODELS,
                                       spec_from_checkpoint)
from maml_robot.online.rehearsal import run_in_process

__all__ = ['AdapterSpec', 'Command', 'fresh_checkpoint', 'load_adapter', 'MODE_BAD_ACTION',
           'MODE_BAD_OBS', 'MODE_ESTOP', 'MODE_FADE', 'MODE_POLICY', 'MODE_RAMP', 'MODE_STALE',
           'OnlineAdapter', 'OnlineConfig', 'params_fingerprint', 'resolve_checkpoint',
           'run_in_process', 'scenario_of', 'SHIPPED_MODELS', 'spec_from_checkpoint']
