"""Typed settings: one field declaration gives the check, the error, the flag and the section."""

import argparse
from dataclasses import dataclass, fields

from maml_robot import cli
from maml_robot.meta.inner import InnerConfig
from maml_robot.meta.promp import ProMPConfig
from maml_robot.meta.trpo import TRPOConfig
from maml_robot.settings import (add_flags, field_docs, flag_values, from_dict, section,
                                 setting, spec_of, validate, value_range)
from maml_robot.train_config import TrainConfig
import pytest


@dataclass
class Example:
    """A configuration with one setting of each kind."""

    count: int = setting(3, bounds='>= 1', flag='n')
    """How many; 100% of them."""
    rate: float = setting(0.5, bounds='(0, 1]', to=('inner', 'lr'))
    """A rate."""
    horizon: int | None = setting(None, bounds='[1, 10)')
    """Steps."""
    on: bool = setting(True)
    """Switch."""
    mode: str = setting('a', choices=('a', 'b'), to=('inner', 'mode'))
    """Mode."""
    sizes: tuple[int, ...] = setting((4, 4), bounds='>= 1')
    """Widths."""
    name: str = setting('x', flag=False, check=bool, want='a name')
    """Not on the command line."""

    def __post_init__(self):
        validate(self)


@pytest.mark.parametrize('key, value, message', [
    ('count', 0, 'count: expected an integer >= 1, got 0'),
    ('count', 2.0, 'count: expected an integer >= 1, got 2.0'),
    ('count', True, 'count: expected an integer >= 1, got True'),
    ('rate', 0, 'rate: expected a number in (0, 1], got 0'),
    ('rate', float('nan'), 'rate: expected a number in (0, 1], got nan'),
    ('rate', '0.5', "rate: expected a number in (0, 1], got '0.5'"),
    ('horizon', 10, 'horizon: expected null or an integer in [1, 10), got 10'),
    ('on', 1, 'on: expected true or false, got 1'),
    ('mode', 'c', "mode: expected one of ('a', 'b'), got 'c'"),
    ('sizes', [], 'sizes: expected a non-empty list of integers >= 1, e.g. [4, 4], got []'),
    ('sizes', [4, 0], 'sizes: expected a non-empty list of integers >= 1'),
    ('name', '', "name: expected a name, got ''"),
])
def test_a_bad_value_names_the_key_and_what_to_write(key, value, message):
    with pytest.raises(ValueError) as err:
        Example(**{key: value})
    assert str(err.value).startswith(message), str(err.value)


def test_good_values_at_the_bounds_pass_and_are_normalized():
    ex = Example(count=1, rate=1, horizon=9, sizes=[2], on=False)
    assert (ex.count, ex.rate, ex.horizon, ex.sizes, ex.on) == (1, 1.0, 9, (2,), False)
    assert isinstance(ex.rate, float)
    assert Example(horizon=None).horizon is None


def test_from_dict_names_the_source_and_an_unknown_key():
    with pytest.raises(ValueError, match=r"f.yaml: unknown key 'cuont'; valid keys are count, "):
        from_dict(Example, {'cuont': 2}, 'f.yaml')
    with pytest.raises(ValueError, match=r'f.yaml: count: expected an integer >= 1, got -1'):
        from_dict(Example, {'count': -1}, 'f.yaml')
    with pytest.raises(ValueError, match='f.yaml: expected a mapping of Example keys, got list'):
        from_dict(Example, [1], 'f.yaml')


@pytest.mark.parametrize('bounds', ['>= x', '=> 1', '[0 1]', '0..1'])
def test_a_bad_bounds_text_fails_at_the_declaration(bounds):
    with pytest.raises(ValueError, match='bounds'):
        setting(0, bounds=bounds)


def test_a_mutable_default_is_refused():
    with pytest.raises(TypeError, match='use a tuple'):
        setting([64, 64])


def parse(cls, argv):
    parser = argparse.ArgumentParser()
    add_flags(parser, cls)
    return parser, flag_values(parser.parse_args(argv), cls)


def test_flags_come_from_the_fields():
    parser, values = parse(Example, ['--n', '5', '--no-on', '--sizes', '8', '2',
                                     '--mode', 'b', '--rate', '0.25'])
    assert values == {'count': 5, 'on': False, 'sizes': [8, 2], 'mode': 'b', 'rate': 0.25}
    assert Example(**values).sizes == (8, 2)
    assert parse(Example, [])[1] == {}      # a flag not given leaves the file's value
    text = parser.format_help()
    assert 'How many; 100% of them. [count: an integer >= 1]' in ' '.join(text.split())
    assert '--name' not in text and '--count' not in text
    with pytest.raises(SystemExit):
        parse(Example, ['--mode', 'c'])     # choices are the flag's choices


def test_a_new_field_needs_only_its_declaration():
    @dataclass
    class Grown(Example):
        wait_s: float = setting(30.0, bounds='> 0')
        """Seconds to wait for a worker."""

    _, values = parse(Grown, ['--wait-s', '5'])
    assert values == {'wait_s': 5.0}
    with pytest.raises(ValueError, match='wait_s: expected a number > 0, got 0'):
        from_dict(Grown, {'wait_s': 0})
    assert field_docs(Grown)['wait_s'] == 'Seconds to wait for a worker.'
    assert field_docs(Grown)['count'] == 'How many; 100% of them.'     # from the base class


def test_value_range_gives_the_limits_as_the_setting_type():
    ranges = {f.name: value_range(f) for f in fields(Example)}
    assert ranges['count'] == (1, None) and type(ranges['count'][0]) is int
    assert ranges['rate'] == (0.0, 1.0) and type(ranges['rate'][0]) is float  # open low: 0
    assert ranges['horizon'] == (1, 10)
    assert ranges['on'] == ranges['mode'] == (None, None)


def test_numpy_numbers_are_taken_as_python_ones():
    import numpy as np
    ex = Example(count=np.int64(2), rate=np.float32(0.5), sizes=[np.int32(3)])
    assert (type(ex.count), type(ex.rate), type(ex.sizes[0])) == (int, float, int)
    with pytest.raises(ValueError, match='count: expected an integer >= 1'):
        Example(count=np.int64(0))
    with pytest.raises(ValueError, match='on: expected true or false'):
        Example(on=np.bool_(True))


def test_section_collects_the_fields_sent_to_a_nested_config():
    assert section(Example(rate=0.2, mode='b'), 'inner') == {'lr': 0.2, 'mode': 'b'}


# ------------------------------------------------------------------------------ TrainConfig
def test_every_nested_target_is_a_field_of_its_config():
    for f in fields(TrainConfig):
        target = spec_of(f).to
        if target is not None:
            assert target[1] in {g.name for g in fields(target[0])}, f.name


def test_train_config_builds_the_inner_and_outer_configs():
    cfg = TrainConfig(inner_lr=0.2, learn_inner_lr=True, inner_lr_per='tensor',
                      inner_steps=2, gamma=0.9, gae_lambda=0.8, outer_lr=0.01,
                      outer_steps=3, clip_eps=0.1, kl_coeff=0.02, max_kl=0.05,
                      max_post_clip_frac=0.4)
    assert cfg.inner_config() == InnerConfig(lr=0.2, learn_lr=True, lr_per='tensor', steps=2,
                                             gamma=0.9, gae_lambda=0.8)
    assert cfg.outer_config() == ProMPConfig(outer_lr=0.01, num_outer_steps=3, clip_eps=0.1,
                                             kl_coeff=0.02, max_post_clip_frac=0.4)
    trpo = TrainConfig(algorithm='trpo', max_kl=0.05, outer_lr=0.5)
    assert trpo.outer_config() == TRPOConfig(max_kl=0.05)
    fomaml = TrainConfig(algorithm='fomaml', outer_steps=4, kl_coeff=0.0)
    assert fomaml.outer_config() == ProMPConfig(num_outer_steps=4, kl_coeff=0.0,
                                                first_order=True)


def test_the_train_flags_users_have_keep_their_names():
    argv = ['train', '--out', 'run', '--iterations', '3', '--tasks', '4', '--rollouts', '5',
            '--horizon', '6', '--seed', '7', '--workers', '2', '--device', 'cpu',
            '--inference', 'workers', '--threads', '1', '--backend', 'local',
            '--outer-lr', '0.01', '--no-learn-inner-lr', '--hidden-sizes', '16', '16']
    args = cli.build_parser().parse_args(argv)
    assert flag_values(args, TrainConfig) == {
        'iterations': 3, 'tasks_per_iteration': 4, 'rollouts_per_task': 5, 'horizon': 6,
        'seed': 7, 'workers': 2, 'device': 'cpu', 'inference': 'workers', 'outer_lr': 0.01,
        'learn_inner_lr': False, 'hidden_sizes': [16, 16]}
    assert (args.threads, args.backend, args.out) == (1, 'local', 'run')


def test_a_bad_train_flag_gets_the_config_message(capsys, tmp_path):
    assert cli.main(['train', '--out', str(tmp_path / 'x'), '--clip-eps', '1.5']) == 2
    assert 'clip_eps: expected a number in (0, 1), got 1.5' in capsys.readouterr().err
    assert not (tmp_path / 'x').exists()
