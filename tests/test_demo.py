"""``maml-robot demo`` end to end over ROS 2 (short run)."""

import json
import subprocess
import sys

from maml_robot.commands.demo import paired_gains
import pytest
from ros_domains import domain_id


def test_demo_runs_prints_returns_and_plots(tmp_path):
    out = tmp_path / 'demo'
    proc = subprocess.run(
        [sys.executable, '-m', 'maml_robot.cli', 'demo', '--episodes', '5', '--out', str(out),
         '--rollouts-per-step', '1', '--real-time-factor', '6', '--domain-id', str(domain_id())],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('episode ')]
    assert len(lines) == 5 and 'meta-policy' in lines[0]
    summary = json.loads((out / 'demo.json').read_text())
    assert [e['episode'] for e in summary['episodes']] == [1, 2, 3, 4, 5]
    assert summary['task']['motor_direction'].count(-1) >= 1     # a reversed motor
    assert summary['episodes'][-1]['adaptations'] >= 1          # it adapted over ROS
    assert (out / 'adaptation.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    # the sim repeated its starts every --rollouts-per-step episodes; the adapter's episode 1
    # was the sim's episode 1 (started paused until the adapter was active)
    assert summary['episode_cycle'] == 1
    assert all(0 < e['steps'] <= 50 for e in summary['episodes'])
    for stage in summary['paired_gain_by_adaptations'].values():
        assert stage['pairs'] == 1 and abs(stage['mean_gain']) < 100


def test_paired_gains_compare_each_cycle_slot_with_itself():
    # (episode, return, adaptations, steps); cycle 2: slots are episodes 1, 3, 5 / 2, 4, 6
    rows = [(1, -5.0, 0, 50), (2, -9.0, 0, 50), (3, -4.0, 1, 50), (4, -6.0, 1, 50),
            (5, -3.0, 2, 50), (6, -1.0, 2, 31)]      # episode 6 lost steps: not compared
    gains = paired_gains(rows, 2, 50)
    assert gains[1] == (pytest.approx(((-4.0 + 5.0) + (-6.0 + 9.0)) / 2), 2)
    assert gains[2] == (pytest.approx(-3.0 + 5.0), 1)
    assert 0 not in gains
