"""Worker pools that step many environments for the sampler (``maml_robot.sampler``)."""

from maml_robot.sampling.backend import EnvSpaces, WorkerBackend, WorkerCrashed, WorkerFailure
from maml_robot.sampling.local import ProcessBackend

__all__ = ['EnvSpaces', 'ProcessBackend', 'WorkerBackend', 'WorkerCrashed', 'WorkerFailure']
