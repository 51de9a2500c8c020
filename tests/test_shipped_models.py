"""Shipped meta-policies: the names offered are the files in maml_robot/models/, no others."""

from pathlib import Path

from maml_robot.online.loading import resolve_checkpoint, SHIPPED_MODELS
import pytest

MODELS = Path(__file__).resolve().parent.parent / 'maml_robot' / 'models'


def test_shipped_names_are_exactly_the_model_files():
    assert SHIPPED_MODELS == ('cheetah', 'kuka_reach', 'quadruped', 'reacher')
    assert set(SHIPPED_MODELS) == {p.stem for p in MODELS.glob('*.safetensors')}
    for name in SHIPPED_MODELS:
        assert resolve_checkpoint(name) == MODELS / f'{name}.safetensors'
        assert (MODELS / f'{name}.json').is_file(), f'{name} ships without its .json card'


def test_a_name_that_is_not_shipped_says_what_is(tmp_path, monkeypatch):
    with pytest.raises(ValueError,
                       match=r"'a1_walk' is neither .* \['cheetah', 'kuka_reach', 'quadruped', "
                             r"'reacher'\]"):
        resolve_checkpoint('a1_walk')
    # a path is returned as given (its loader reports a missing file), also a bare file name
    assert resolve_checkpoint('runs/a1_walk.safetensors') == Path('runs/a1_walk.safetensors')
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'mine').write_bytes(b'')
    assert resolve_checkpoint('mine') == Path('mine')
