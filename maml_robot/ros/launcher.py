"""Start the nodes as processes from ROS params files (the pip user's ``ros2 launch``)."""

import ctypes
import importlib
import os
import signal
import subprocess
import sys
import time

from maml_robot.paths import data_path
from maml_robot.stop_signals import exit_code, signal_of, stop_signals_raise
import yaml

NODES = {'sim_node': 'maml_robot.ros.sim_node', 'adapter_node': 'maml_robot.ros.adapter_node'}
DESCRIPTION_WAIT = 30.0
"""robot_description_timeout of an adapter started beside a sim_node, which publishes the URDF
at start-up: the wait ends when it arrives, and a slow sim start-up is not a missing robot."""


def ros_value(value) -> str:
    """Format a Python value as the YAML that ``--ros-args -p name:=value`` expects."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f'cannot pass {value!r} as a ROS parameter (use bool, int, float or str)')


def parse_value(text: str):
    """
    Parse one ``--set`` value as ROS parses ``-p name:=value``.

    YAML, except that numbers YAML 1.1 reads as strings (``1e-3``) are numbers, as in ROS.
    """
    if not text.strip():
        return ''
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(text.strip())
            except ValueError:
                pass
    return text if isinstance(value, (dict, list)) or value is None else value


def parse_overrides(items, table=None) -> dict:
    """
    Parse ``key=value`` strings into a dict; ValueError on a bad item.

    With ``table`` (a node's Param table) every name must be a parameter of the node and
    every value fit its type, range and choices; the error names the parameter.
    """
    # lazy: ros.params imports rclpy; `maml-robot --help` and pip users without ROS import this
    from maml_robot.ros.params import check_value, find_param
    out = {}
    for item in items or ():
        key, sep, text = item.partition('=')
        key = key.strip()
        if not sep or not key:
            raise ValueError(f'--set expects key=value, got {item!r}')
        value = parse_value(text)
        if table is not None:
            param = find_param(table, key)
            value = check_value(param, text if isinstance(param.default, str) else value)
        out[key] = value
    return out


def node_parameters(node: str):
    """Return the Param table of a node (``PARAMETERS`` of its module)."""
    if node not in NODES:
        raise ValueError(f'unknown node {node!r}; have {sorted(NODES)}')
    return importlib.import_module(NODES[node]).PARAMETERS


def default_params_file(node: str) -> str:
    """Return the shipped params file of a node: config/sim.yaml or config/adapter.yaml."""
    return str(data_path('config', 'sim.yaml' if node == 'sim_node' else 'adapter.yaml'))


def ros_args(params_files=(), overrides=None, namespace=None, remaps=None) -> list:
    """Return the ``--ros-args ...`` list for params files, -p overrides, namespace, remaps."""
    args = ['--ros-args']
    for path in params_files:
        if not os.path.isfile(path):
            raise FileNotFoundError(f'params file {path} does not exist')
        args += ['--params-file', str(path)]
    for key, value in (overrides or {}).items():
        args += ['-p', f'{key}:={ros_value(value)}']
    if namespace:
        args += ['-r', f'__ns:={namespace}']
    for src, dst in (remaps or {}).items():
        args += ['-r', f'{src}:={dst}']
    return args


def node_command(node: str, params_files=None, overrides=None, namespace=None,
                 remaps=None) -> list:
    """Return the argv that runs ``node`` with the given params (the shipped file by default)."""
    if node not in NODES:
        raise ValueError(f'unknown node {node!r}; have {sorted(NODES)}')
    files = [default_params_file(node)] if params_files is None else list(params_files)
    return [sys.executable, '-m', NODES[node]] + ros_args(files, overrides, namespace, remaps)


PR_SET_PDEATHSIG = 1
"""prctl option: the signal a process gets when its parent dies (Linux)."""


def _detach_from_terminal_and_follow_parent():
    """
    Run in each child before exec: its own process group, SIGTERM when the wrapper dies.

    In its own group a node gets no Ctrl-C from the terminal; the wrapper forwards exactly one
    stop signal (two SIGINTs, one from the terminal and one forwarded, would interrupt the
    node's clean shutdown). The parent-death signal stops a node whose wrapper was killed
    (SIGKILL, a crash) instead of leaving it orphaned.
    """
    os.setpgid(0, 0)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):   # not Linux: no parent-death signal
        pass


class NodeProcesses:
    """
    A group of node processes on one ROS_DOMAIN_ID; stopping forwards a signal, then kills.

    Use :meth:`supervise` in the wrapper command: SIGINT, SIGTERM and SIGHUP to the wrapper
    are forwarded to every node, the wrapper waits for them (killing one that does not stop
    within ``timeout``) and returns 128 + the signal number (130, 143, 129).
    """

    def __init__(self, domain_id=None, log_dir=None):
        """:param domain_id: ROS_DOMAIN_ID for the children. :param log_dir: logs go here."""
        self.env = dict(os.environ)
        if domain_id is not None:
            self.env['ROS_DOMAIN_ID'] = str(int(domain_id))
        self.env.setdefault('PYTHONUNBUFFERED', '1')
        self.log_dir = log_dir
        self.procs = {}
        self._logs = []

    def start(self, name: str, argv: list) -> subprocess.Popen:
        """Start one process; its output goes to ``log_dir/name.log`` (or this terminal)."""
        out = None
        if self.log_dir is not None:
            os.makedirs(self.log_dir, exist_ok=True)
            out = open(os.path.join(self.log_dir, f'{name}.log'), 'w')
            self._logs.append(out)
        proc = subprocess.Popen(argv, env=self.env, stdout=out,
                                stderr=subprocess.STDOUT if out else None,
                                preexec_fn=_detach_from_terminal_and_follow_parent)
        self.procs[name] = proc
        return proc

    def check_alive(self):
        """Raise RuntimeError naming a process that has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f'{name} exited with code {proc.returncode}' + (
                    f'; see {os.path.join(self.log_dir, name + ".log")}' if self.log_dir else ''))

    def supervise(self, names, wait, timeout: float = 10.0) -> int:
        """
        Start ``names`` (name -> argv) under stop-signal forwarding and return ``wait()``.

        On SIGINT, SIGTERM or SIGHUP to this process every node gets the same signal, is
        waited for, and 128 + the signal number is returned.
        """
        with stop_signals_raise():
            try:
                for name, argv in names.items():
                    self.start(name, argv)
                return wait()
            except KeyboardInterrupt as err:
                signum = signal_of(err)
                self.stop(timeout=timeout, signum=signum)
                return 128 + signum

    def stop(self, name=None, timeout: float = 10.0, signum=signal.SIGINT) -> dict:
        """Stop one (or every) process with ``signum``; return {name: exit code as a shell's}."""
        names = [name] if name else list(self.procs)
        for n in names:
            if self.procs[n].poll() is None:
                self.procs[n].send_signal(signum)
        codes = {}
        deadline = time.monotonic() + timeout
        for n in names:
            proc = self.procs.pop(n)
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            codes[n] = exit_code(proc.returncode)
        if not self.procs:
            for f in self._logs:
                f.close()
            self._logs = []
        return codes

    def __enter__(self):
        """Return self."""
        return self

    def __exit__(self, *exc):
        """Stop every process."""
        if self.procs:
            self.stop()
