"""``maml-robot train``: meta-train a policy on a scenario (progress bar, logs, checkpoints)."""

import contextlib
import logging
import os
from pathlib import Path
import sys

from maml_robot.commands.arguments import positive_int
from maml_robot.meta.trainer import Trainer
from maml_robot.sampler import SamplerError
from maml_robot.sampling.backend_choice import add_backend_arguments, make_backend
from maml_robot.settings import add_flags, flag_values
from maml_robot.stop_signals import STOP_SIGNALS, stop_signals_raise, StopRequested  # noqa: F401
from maml_robot.train_config import default_config_path, load_train_config, TrainConfig
import torch


@contextlib.contextmanager
def stop_signals_save_state():
    """
    While the block runs, SIGTERM and SIGHUP raise :class:`StopRequested` in the main thread.

    The trainer saves the last completed iteration on KeyboardInterrupt (Ctrl-C); without this,
    ``kill``, a job scheduler's time limit or a closed terminal would end the run unsaved. A
    signal the caller set to be ignored (e.g. SIGHUP under ``nohup``) stays ignored, and a
    second signal while the state is being saved ends the process at once (the checkpoint
    files are written atomically, so the last complete save survives).
    """
    with stop_signals_raise():
        yield


def add_arguments(parser):
    """Declare the flags of ``maml-robot train``."""
    parser.add_argument('--scenario', default=None,
                        help='shipped scenario (reacher, cheetah, quadruped) or a scenario YAML '
                             'path; default: the scenario of --config, else reacher')
    parser.add_argument('--out', required=True,
                        help='run folder: logs, latest/best checkpoints, resume state')
    parser.add_argument('--config', default=None,
                        help='TrainConfig YAML (default: config/train/<scenario>.yaml)')
    parser.add_argument('--resume', action='store_true',
                        help='continue the run saved in --out exactly where it stopped')
    parser.add_argument('--threads', type=positive_int, default=None,
                        help='torch threads of the main process (default: the cores the '
                             'workers leave free, at least 1)')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    add_backend_arguments(parser)
    add_flags(parser.add_argument_group(
        'training settings', 'each flag overrides its key of the TrainConfig YAML (--config, '
        'else config/train/<scenario>.yaml); [key: what it accepts]'), TrainConfig)


def run(args) -> int:
    """
    Train; return 0 on success.

    Ctrl-C (KeyboardInterrupt), SIGTERM and SIGHUP save the state, then propagate.
    """
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    overrides = flag_values(args, TrainConfig)
    scenario = args.scenario
    if args.resume and args.config is None:
        # the run's own config.yaml is the reference; flags may still extend it
        saved = Path(args.out) / 'config.yaml'
        if not saved.is_file():
            raise FileNotFoundError(f'{saved} not found: nothing to resume in {args.out}')
        args.config = str(saved)
    if scenario is None and args.config is None:
        scenario = 'reacher'
    if args.config is None and default_config_path(scenario) is None:
        print(f'maml-robot train: no training recipe for scenario {scenario!r} (shipped ones '
              'are config/train/<name>.yaml): using the TrainConfig defaults with your flags; '
              'pass --config FILE to set the algorithm, sizes and step sizes',
              file=sys.stderr)
    config = load_train_config(scenario, args.config, overrides)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f'--threads must be >= 1, got {args.threads}')
        torch.set_num_threads(args.threads)
    else:
        # The workers step the envs on the same cores: a main process with one torch thread per
        # core spin-waits against them (measured 10x slower iterations on 2 cores).
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - config.workers))
    torch.manual_seed(config.seed)  # only the CLI seeds globally (nothing should rely on it)
    backend = make_backend(args.backend, config.workers, ray_address=args.ray_address,
                           step_timeout=config.step_timeout,
                           start_timeout=args.worker_start_timeout)
    trainer = Trainer(config, args.out, resume=args.resume, progress=not args.no_progress,
                      backend=backend)
    try:
        with stop_signals_save_state():
            row = trainer.run()
    except (SamplerError, FloatingPointError) as err:
        print(f'maml-robot train: error: {err}\nthe state of the last completed iteration is '
              f'saved in {args.out}; fix the cause and continue with --resume', file=sys.stderr)
        return 1
    if row:
        print(f'trained {trainer.iteration} iterations in {trainer.wall_time:.0f} s: return '
              f'before adaptation {row["pre_return"]:.3f}, after {row["post_return"]:.3f}; '
              f'checkpoints in {args.out}')
    else:
        print(f'nothing to do: {args.out} already has {trainer.iteration} iterations')
    return 0
