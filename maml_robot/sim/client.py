"""
The PyBullet layer: one physics server connection per object, no global state.

``PhysicsClient`` is a ``pybullet_utils.bullet_client.BulletClient``:
``client.changeDynamics(...)`` calls pybullet with this client's id. That attribute access
builds a new ``functools.partial`` every call (about 2 us), so the per-step path binds its
functions once with ``bind`` instead (a bound call costs what a direct ``physicsClientId=`` call
does).
"""

import contextlib
import functools
import os
import sys

import numpy as np
import pybullet
from pybullet_utils.bullet_client import BulletClient


@contextlib.contextmanager
def quiet_stdout():
    """Silence the C-level stdout (the URDF importer prints warnings for inertia-less roots)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no usable stdout (closed or detached): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class PhysicsClient(BulletClient):
    """
    A PyBullet physics server this object owns: headless (DIRECT) or the GUI.

    :param gui: open the PyBullet GUI instead of a headless client.
    :param timestep: the physics step (s).
    :param gravity: the world z acceleration (m/s^2).
    """

    def __init__(self, gui=False, timestep=1 / 240, gravity=-9.81):
        # BulletClient's own __init__ passes options='', on which pybullet prints 'argv[0]='
        # to stdout at every connection: connect as plain pybullet does, then set its fields
        self._shapes, self._pid = {}, os.getpid()
        self._client = pybullet.connect(pybullet.GUI if gui else pybullet.DIRECT)
        if self._client < 0:
            raise RuntimeError('cannot connect to PyBullet (is another GUI client open?)')
        self.setTimeStep(timestep)
        self.setGravity(0, 0, gravity)

    @property
    def client_id(self):
        """Return this client's physicsClientId (-1 once closed)."""
        return self._client

    def bind(self, name, *args):
        """
        Return pybullet function ``name`` with this client's id (and ``args``) bound once.

        For calls made every physics or control step: cheaper than ``client.name`` (which binds
        anew at every access) and as cheap as passing ``physicsClientId=`` by hand.
        """
        return functools.partial(getattr(pybullet, name), *args, physicsClientId=self._client)

    def add_ground(self):
        """Add an infinite static ground plane at z = 0; return its body id."""
        shape = self.createCollisionShape(pybullet.GEOM_PLANE)
        return self.createMultiBody(0, shape)

    def load_urdf(self, path, base_position=(0, 0, 0), fixed_base=False):
        """Load a URDF with the inertias it gives (importer chatter silenced); return its id."""
        with quiet_stdout():
            return self.loadURDF(str(path), basePosition=base_position, useFixedBase=fixed_base,
                                 flags=pybullet.URDF_USE_INERTIA_FROM_FILE)

    def camera_image(self, target, distance, width, height):
        """Return an RGB image (height, width, 3) uint8 looking at ``target`` [x, y, z] (list)."""
        view = self.computeViewMatrixFromYawPitchRoll(target, distance, 30.0, -40.0, 0.0, 2)
        proj = self.computeProjectionMatrixFOV(60.0, width / height, 0.01, 100.0)
        img = self.getCameraImage(width, height, view, proj, renderer=pybullet.ER_TINY_RENDERER)
        rgba = np.reshape(np.asarray(img[2], dtype=np.uint8), (height, width, 4))
        return rgba[:, :, :3].copy()

    def close(self):
        """Disconnect (idempotent)."""
        if self._client >= 0:
            if pybullet.isConnected(physicsClientId=self._client):
                pybullet.disconnect(physicsClientId=self._client)
            self._client = -1

    def __del__(self):
        """Release the connection if the owner forgot to close() (only in its own process)."""
        if getattr(self, '_client', -1) >= 0 and self._pid == os.getpid():
            try:
                self.close()
            except Exception:  # noqa: B902 - interpreter shutdown may have torn pybullet down
                pass
