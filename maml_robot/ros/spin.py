"""The one ``main`` body of our nodes: init, build, spin, clean shutdown, clear errors."""

import sys

from maml_robot.ros.params_file import check_params_files, params_files_of
from maml_robot.stop_signals import stop_signals_raise
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation

RCLError = rclpy_implementation.RCLError
"""What rcl raises, e.g. on a publish racing with shutdown (rclpy's own modules take it so)."""


def run_node(name, make_node, args=None, start=None, stop=None, parameters=None):
    """
    Build a node with ``make_node()`` and spin it until shutdown; return the exit code.

    ``start(node)`` runs before spinning and may return a non-zero exit code to stop early;
    ``stop(node)`` runs on every exit (e.g. to persist state). A ``ValueError`` (a bad
    parameter) is printed as ``<name>: error: ...`` and gives exit code 2; with
    ``parameters`` (the node's Param table) that includes a bad value or an unknown name in a
    ``--params-file`` of the arguments, found before the node starts. SIGINT, SIGTERM
    (rclpy's handlers) and SIGHUP (ours) stop the node cleanly: ``stop`` runs, exit code 0.
    """
    if parameters is not None:
        try:
            check_params_files(params_files_of(sys.argv if args is None else args), name,
                               parameters)
        except ValueError as err:
            print(f'{name}: error: {err}', file=sys.stderr)
            return 2
    with stop_signals_raise(('SIGHUP',)):
        return _run_node(name, make_node, args, start, stop)


def _run_node(name, make_node, args, start, stop):
    rclpy.init(args=args)
    node = None
    # made before start: a stop signal during start-up shuts the context down, and an executor
    # made after that fails half-built (its __del__ then prints a traceback)
    executor = SingleThreadedExecutor()
    try:
        node = make_node()
        code = start(node) if start is not None else 0
        if code:
            return code
        executor.add_node(node)
        executor.spin()
    except ValueError as err:
        print(f'{name}: error: {err}', file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if rclpy.ok():       # a real error, not a publish racing with Ctrl-C
            raise
    finally:
        if node is not None:
            if stop is not None:
                stop(node)
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0
