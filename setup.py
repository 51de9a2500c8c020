"""Build script: an ament_python package that also installs with pip."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'maml_robot'


def tree(folder):
    """Return data_files entries that install ``folder`` under share/maml_robot."""
    entries = {}
    for path in glob(os.path.join(folder, '**', '*'), recursive=True):
        if os.path.isfile(path):
            target = os.path.join('share', PACKAGE, os.path.dirname(path))
            entries.setdefault(target, []).append(path)
    return sorted(entries.items())


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, PACKAGE + '.*']),
    package_data={PACKAGE: ['models/*.safetensors', 'models/*.json']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
    ] + tree('launch') + tree('urdf') + tree('sim') + tree('config'),
    python_requires='>=3.10',
    install_requires=[
        'numpy>=1.24',
        'torch>=2.2',
        'gymnasium>=1.0',
        'pybullet>=3.2.5',
        'stable-baselines3>=2.3',
        'safetensors>=0.4',
        'matplotlib>=3.7',
        'tqdm>=4.60',
        'PyYAML>=6.0',
        'tensorboard>=2.16',
    ],
    extras_require={
        'ros': [
            'ros-rclpy[fastrtps]',
            'ros-std-msgs', 'ros-sensor-msgs', 'ros-geometry-msgs', 'ros-nav-msgs',
            'ros-std-srvs', 'ros-diagnostic-msgs', 'ros-rosgraph-msgs', 'ros-lifecycle-msgs',
            'ros-trajectory-msgs',
        ],
        'dev': [
            'pytest', 'ros-ament-flake8', 'ros-ament-pep257', 'flake8', 'pydocstyle',
            'flake8-quotes', 'flake8-import-order', 'flake8-docstrings', 'flake8-builtins',
            'flake8-comprehensions',
        ],
        'ray': ['ray==2.60.0'],
    },
    zip_safe=False,
    maintainer='maml_robot maintainers',
    maintainer_email='maintainers@maml-robot.invalid',
    description='Meta-RL (MAML family) for robots whose dynamics change, with ROS 2 deployment.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'maml-robot = maml_robot.cli:main',
            'adapter_node = maml_robot.ros.adapter_node:main',
            'sim_node = maml_robot.ros.sim_node:main',
        ],
    },
)
