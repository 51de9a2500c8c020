"""``maml-robot demo`` end to end over ROS 2 (short run)."""

import json
import subprocess
import sys


def test_demo_runs_prints_returns_and_plots(tmp_path):
    out = tmp_path / 'demo'
    proc = subprocess.run(
        [sys.executable, '-m', 'maml_robot.cli', 'demo', '--episodes', '5', '--out', str(out),
         '--rollouts-per-step', '1', '--real-time-factor', '6'],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('episode ')]
    assert len(lines) == 5 and 'meta-policy' in lines[0]
    summary = json.loads((out / 'demo.json').read_text())
    assert [e['episode'] for e in summary['episodes']] == [1, 2, 3, 4, 5]
    assert summary['task']['motor_direction'].count(-1) >= 1     # a reversed motor
    assert summary['episodes'][-1]['adaptations'] >= 1          # it adapted over ROS
    assert (out / 'adaptation.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
