"""Settings, deployment contract and command of the online adapter."""

from dataclasses import dataclass
from typing import Callable, Optional
import warnings

from maml_robot.actuation import Actuation
from maml_robot.settings import setting, validate
import numpy as np


# Why an action was (or was not) the policy's: reported with every command.
MODE_POLICY = 'policy'
MODE_RAMP = 'ramp_in'
MODE_FADE = 'fade_in'
MODE_ESTOP = 'estop'
MODE_STALE = 'stale_state'
MODE_BAD_OBS = 'bad_observation'
MODE_BAD_ACTION = 'bad_action'

ADAPTATIONS = ('pg', 'hill_climb', 'es')
"""Adaptation operators the adapter runs (maml_robot.meta.operators.OPERATORS)."""


@dataclass
class OnlineConfig:
    """
    Settings of the online adapter; the adapter node declares a ROS parameter for each field.

    Each field's docstring is its description, :func:`~maml_robot.settings.setting` gives its
    range (``bounds``), choices, whether it may change while the node runs (``live``) and
    whether it is a ROS parameter (``ros``).
    """

    adapt: bool = setting(True, live=True)
    """Adapt online from live rewards; False runs the loaded policy (mean action) unchanged."""
    adaptation: str = setting('', choices=('',) + ADAPTATIONS)
    """Adaptation operator: pg (the meta-learned policy-gradient step, on rollouts of the
    Gaussian policy), hill_climb or es (derivative-free: the policy acts with its mean action,
    candidates are perturbations of the parameters); '' = what the checkpoint was trained for
    (its metadata adaptation.operator, else pg)."""
    adaptation_args: str = ''
    """Settings of a derivative-free operator, comma-separated KEY=VALUE (as `maml-robot eval
    --adaptation-args`), e.g. 'sigma=0.01,batch=4,episodes=2'; over the checkpoint's own."""
    steps_per_batch: int = setting(1, bounds='[1, 100]')
    """pg: inner_step calls per update, all on the same batch of live episodes (unlike
    training's inner_steps, each on fresh rollouts)."""
    rollouts_per_step: int = setting(20, bounds='[1, 1000]')
    """Live episodes collected under the current parameters before each update (the shipped
    policies were meta-trained for one step on 20 rollouts)."""
    episode_steps: int = setting(0, bounds='[0, 1000000]')
    """Control steps per episode; 0 takes the checkpoint's episode length."""
    min_episode_steps: int = setting(0, bounds='[0, 1000000]')
    """Shorter episodes (cut by a reset signal) are not learned from; 0 = half an episode."""
    state_timeout: float = setting(0.1, bounds='[0.001, 60.0]', live=True)
    """Seconds without fresh state before the hold command is sent and adaptation freezes."""
    max_param_delta: float = setting(1.0, bounds='[1e-6, 1e6]', live=True)
    """Largest L2 norm of one update over all parameters; a larger step is scaled down to it."""
    rate_limit: float = setting(0.0, bounds='[0.0, 2.0]', live=True)
    """Largest change of a normalized action per control step; 0 disables the rate limit."""
    ramp_in_steps: int = setting(10, bounds='[0, 100000]')
    """Control steps of hold command after start, e-stop release or a sensor outage."""
    fade_in_steps: int = setting(25, bounds='[0, 100000]')
    """Control steps over which the policy's action is blended in after the ramp-in."""
    accept_window: int = setting(0, bounds='[0, 1000]')
    """Episodes an adapted policy is evaluated on before it is accepted or rolled back; 0 =
    rollouts_per_step: the episodes the next update needs anyway, so judging costs none."""
    rollback_margin: float = setting(0.1, bounds='[0.0, 10.0]', live=True)
    """Roll back when the window return is below the previous one by this fraction of |it|."""
    divergence_margin: float = setting(0.5, bounds='[0.0, 100.0]', live=True)
    """Revert to the meta-parameters when the return falls this fraction of |meta| below it."""
    rollback_z: float = setting(1.64, bounds='[0.0, 10.0]', live=True)
    """A drop also has to exceed this many standard errors of the difference of the two mean
    returns (episode returns vary with the goal and start state); 1.64 keeps the chance of
    rolling back an update that changed nothing near 5 %; 0 judges on the margins alone."""
    reward_limit: float = setting(1e6, bounds='[1e-6, 1e300]', live=True)
    """Largest plausible |reward| of one step: a larger (or non-finite) reward drops the running
    episode like a broken sensor, so returns, and the references the rollback and divergence
    guards compare with, stay finite and bounded."""
    synchronous: bool = setting(False, ros=False)
    """Run updates inline in act() (deterministic tests); False runs them on their own thread."""
    inner_steps: int = setting(1, bounds='[1, 100]', ros=False)
    """Deprecated name of steps_per_batch: a value other than 1 is taken as steps_per_batch
    (with a FutureWarning); set steps_per_batch instead."""

    def __post_init__(self):
        """Check every field against its type and range; the message says which to change."""
        validate(self)
        self._take_renamed()

    def _take_renamed(self):
        """Map the deprecated ``inner_steps`` onto ``steps_per_batch`` (error if both differ)."""
        if self.inner_steps == 1 or self.inner_steps == self.steps_per_batch:
            return
        if self.steps_per_batch != 1:
            raise ValueError(f'inner_steps={self.inner_steps!r} and steps_per_batch='
                             f'{self.steps_per_batch!r} disagree: inner_steps is the old name of '
                             'steps_per_batch; remove it and keep steps_per_batch')
        warnings.warn('the online setting inner_steps was renamed steps_per_batch (inner_step '
                      'calls on the same batch of live episodes); set steps_per_batch instead',
                      FutureWarning, stacklevel=4)
        self.steps_per_batch = self.inner_steps

    @property
    def window(self):
        """Episodes judged per update: accept_window, or rollouts_per_step when it is 0."""
        return int(self.accept_window or self.rollouts_per_step)


@dataclass(frozen=True)
class AdapterSpec:
    """What the adapter needs from a checkpoint: the deployment contract."""

    joint_names: tuple
    """Controlled joints in checkpoint (scenario) order; commands follow this order."""
    action_scale: np.ndarray
    """(J,) effort limits: effort = normalized action * action_scale, clamped to +-it."""
    episode_steps: int
    """Control steps per training episode."""
    observe: Callable
    """observe(state) -> (obs_dim,) observation, the function training used."""
    reward: Callable
    """reward(state, action, next_state) -> float, the function training used."""
    inner_lr: object = 0.1
    """Inner-loop step size: a float or a dict of per-parameter tensors (Meta-SGD)."""
    inner_kwargs: Optional[dict] = None
    """Extra keyword arguments of inner_step (gamma, gae_lambda, first_order)."""
    control_period: float = 0.0
    """Seconds per control step in training (0 if unknown)."""
    needs: tuple = ()
    """Extra RobotState sources the observation needs: 'goal' and/or 'odom'."""
    position_limits: Optional[np.ndarray] = None
    """(J, 2) lower, upper joint positions (±inf: continuous); None = not checked."""
    actuation: Optional[Actuation] = None
    """How actions become commands (effort or position target) and the safe hold; None:
    torque control with ``action_scale`` as the effort limit."""
    terminated: Optional[Callable] = None
    """terminated(state) -> bool: the episode ends here, as in training (e.g. a fall)."""
    adaptation: str = 'pg'
    """The adaptation operator the checkpoint was meta-trained for (OnlineConfig.adaptation
    '' runs it)."""
    adaptation_args: Optional[dict] = None
    """That operator's settings stored in the checkpoint ({field: value}); None: its defaults."""
    velocity_limits: Optional[np.ndarray] = None
    """(J,) joint speed limits (inf: none); None = not checked."""
    limits_source: str = ''
    """Where the limits were read: the robot's URDF (file or topic) or the scenario's."""


@dataclass
class Command:
    """One control step's output."""

    effort: np.ndarray      # (J,) the joint command to publish: efforts (torque mode) or
    #                         position targets (position mode), finite and within the limits
    action: np.ndarray      # (J,) normalized action after clamp, rate limit and fade
    mode: str               # MODE_* above


def command_order(joint_names, order: str) -> Optional[tuple]:
    """
    Return the indices that reorder a command from checkpoint joint order into ``order``.

    ``order`` lists the controller's joints, comma-separated (ros2_control's
    forward_command_controller takes its ``joints`` parameter's order); '' keeps the checkpoint's
    order (None). ValueError unless it names every checkpoint joint exactly once.
    """
    names = [n.strip() for n in order.split(',') if n.strip()]
    if not names:
        return None
    if sorted(names) != sorted(joint_names) or len(set(names)) != len(names):
        raise ValueError(f'command_joint_order must name each of the checkpoint joints '
                         f'{list(joint_names)} exactly once (comma-separated), got {names}')
    return tuple(list(joint_names).index(n) for n in names)
