"""
Supervised sanity check of the adaptation machinery: few-shot sine regression (Finn et al.).

Tasks: y = A sin(x - phase), A ~ U(0.1, 5), phase ~ U(0, pi), x ~ U(-5, 5), K = 10 shots.
The regressor is the policy's own MLP (``GaussianPolicy.mean_action``) and the adaptation is
``maml_robot.meta.inner.sgd_step`` (params - lr * grad), the update the RL inner step uses.
MAML must beat a model pretrained on all tasks and fine-tuned with the same step.

The cost is pinned as a count of work, not wall-clock time (which depends on the machine and
its load): both models are trained on exactly the same number of regression points.
"""

import math

from maml_robot.meta.inner import sgd_step
from maml_robot.policy import GaussianPolicy, PolicyConfig
import torch

torch.set_num_threads(1)
K = 10
INNER_LR = 0.01
META_BATCH = 25
ITERATIONS = 2000
FINE_TUNE_LRS = (0.001, 0.003, 0.01, 0.03)
REGRESSOR = GaussianPolicy(PolicyConfig(1, 1, hidden_sizes=(40, 40), activation='relu'))
TRAIN_POINTS = ITERATIONS * META_BATCH * 2 * K
"""Regression points each model is trained on: the budget the test is sized for."""


def sample_tasks(n, gen):
    amp = torch.rand(n, generator=gen) * 4.9 + 0.1
    phase = torch.rand(n, generator=gen) * math.pi
    return amp, phase


def sample_points(amp, phase, k, gen):
    x = torch.rand(amp.shape[0], k, 1, generator=gen) * 10 - 5  # (B, k, 1)
    return x, amp[:, None, None] * torch.sin(x - phase[:, None, None])


def mse(params, x, y):
    return ((REGRESSOR.mean_action(params, x) - y) ** 2).mean()


def adapted_loss(params, x_s, y_s, x_q, y_q, steps=1, first_order=False, lr=INNER_LR):
    for _ in range(steps):
        params = sgd_step(lambda p: mse(p, x_s, y_s), params, lr, first_order)
    return mse(params, x_q, y_q)


def train_maml(gen):
    """Return the meta-trained params and the number of regression points trained on."""
    params = {k: v.requires_grad_() for k, v in REGRESSOR.init_params(0).items()}
    opt = torch.optim.Adam(params.values(), lr=1e-3)
    batched = torch.func.vmap(adapted_loss, in_dims=(None, 0, 0, 0, 0))
    points = 0
    for _ in range(ITERATIONS):
        amp, phase = sample_tasks(META_BATCH, gen)
        x_s, y_s = sample_points(amp, phase, K, gen)
        x_q, y_q = sample_points(amp, phase, K, gen)
        points += x_s.shape[0] * x_s.shape[1] + x_q.shape[0] * x_q.shape[1]
        loss = batched(params, x_s, y_s, x_q, y_q).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in params.items()}, points


def train_pretrained(gen):
    """Train the same network on the same data budget to fit all tasks at once."""
    params = {k: v.requires_grad_() for k, v in REGRESSOR.init_params(0).items()}
    opt = torch.optim.Adam(params.values(), lr=1e-3)
    points = 0
    for _ in range(ITERATIONS):
        amp, phase = sample_tasks(META_BATCH, gen)
        x, y = sample_points(amp, phase, 2 * K, gen)
        points += x.shape[0] * x.shape[1]
        loss = mse(params, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in params.items()}, points


def evaluate(params, steps, gen, tasks=200, lr=INNER_LR):
    amp, phase = sample_tasks(tasks, gen)
    x_s, y_s = sample_points(amp, phase, K, gen)
    x_q, y_q = sample_points(amp, phase, 100, gen)
    fn = torch.func.vmap(lambda *a: adapted_loss(params, *a, steps=steps, first_order=True,
                                                 lr=lr))
    return float(fn(x_s, y_s, x_q, y_q).mean())


def test_maml_beats_pretrained_after_one_step():
    maml, maml_points = train_maml(torch.Generator().manual_seed(1))
    pre, pre_points = train_pretrained(torch.Generator().manual_seed(1))
    # the work is fixed and the comparison fair: the same number of points for both models
    assert maml_points == pre_points == TRAIN_POINTS == 1_000_000
    # the fine-tuned baseline gets its best step size, picked on separate validation tasks
    best_lr = min(FINE_TUNE_LRS, key=lambda lr: evaluate(
        pre, 1, torch.Generator().manual_seed(3), lr=lr))
    results = {'maml': [evaluate(maml, s, torch.Generator().manual_seed(2)) for s in (0, 1)],
               'pretrained': [evaluate(pre, s, torch.Generator().manual_seed(2), lr=best_lr)
                              for s in (0, 1)]}
    print(f'sine regression MSE [0 steps, 1 step]: {results} (fine-tune lr {best_lr})')
    maml_1, pre_1 = results['maml'][1], results['pretrained'][1]
    assert maml_1 < 0.7 * pre_1
    assert results['maml'][1] < results['maml'][0]  # adaptation itself helps
