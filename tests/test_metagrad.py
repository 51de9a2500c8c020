"""
The meta-gradient is right: exact expectations on a problem small enough to enumerate.

A 2-step contextual bandit (3 arms, softmax policy, logits = onehot(t) @ w), N=2 pre-update
rollouts, 1 post-update rollout. Every pre-update outcome (3^4) and post-update outcome (3^2)
is enumerated with its probability, so

- J(w) = sum_pre P(pre | w) J_post(w'(w, pre)) is an exact, differentiable function;
- the exact expectation of our estimator (``ProMPLearner.meta_loss`` with the DiCE estimator,
  the code path used in training) can be computed;

and must agree with autograd of an independently written J(w) and with central finite
differences in float64. The naive estimator (no score term) must NOT agree: the test can fail.
"""

import itertools

from maml_robot.episodes import Episodes
from maml_robot.meta.inner import inner_step, InnerConfig
from maml_robot.meta.learners import make_learner
from maml_robot.meta.losses import clip_surrogate, dice_objective
from maml_robot.meta.promp import ProMPConfig, ProMPLearner
from maml_robot.meta.trpo import TRPOConfig, TRPOLearner
import pytest
import torch

torch.set_num_threads(1)
DT = torch.float64
REWARDS = torch.tensor([[1.0, 0.2, -0.6], [-0.3, 0.8, 0.1]], dtype=DT)  # (T, arms)
ALPHA = 0.8
T, ARMS, N_PRE = 2, 3, 2


class ContextBandit:
    """Softmax policy over 3 arms; obs is the one-hot time step, logits = obs @ w."""

    def check_params(self, params):
        assert set(params) == {'w'}

    def normalize(self, obs):
        return obs

    def log_prob(self, params, obs, actions):
        return (actions * torch.log_softmax(obs @ params['w'], -1)).sum(-1)

    def batched_log_prob(self, params_b, obs, actions):
        return torch.func.vmap(self.log_prob)(params_b, obs, actions)

    def kl(self, params_p, params_q, obs):
        lp = torch.log_softmax(obs @ params_p['w'], -1)
        lq = torch.log_softmax(obs @ params_q['w'], -1)
        return (lp.exp() * (lp - lq)).sum(-1)


def episodes(arms, w):
    """Episodes (1, N, T) for arm choices ``arms`` (N, T); log-probs under ``w``."""
    arms = torch.as_tensor(arms).reshape(-1, T)
    n = arms.shape[0]
    obs = torch.eye(T, dtype=DT).expand(n, T, T)
    act = torch.nn.functional.one_hot(arms, ARMS).to(DT)
    rew = REWARDS[torch.arange(T), arms]
    logp = (act * torch.log_softmax(obs @ w, -1)).sum(-1)
    ep = Episodes(obs, act, rew, torch.ones(n, T, dtype=DT), logp.detach())
    return ep.apply(lambda x: x[None])


def prob(arms, w):
    return torch.softmax(w, -1)[torch.arange(T), torch.as_tensor(arms).reshape(-1, T)].prod()


def post_value(w1):
    return (torch.softmax(w1, -1) * REWARDS).sum()


def exact_j_independent(w):
    """J(w) with the vanilla inner step written out by hand (gamma=1, no baseline)."""
    pi = torch.softmax(w, -1)
    total = 0.0
    for pre in itertools.product(range(ARMS), repeat=N_PRE * T):
        a = torch.tensor(pre).reshape(N_PRE, T)
        grad = torch.zeros_like(w)
        for i in range(N_PRE):
            for t in range(T):
                ret = sum(REWARDS[u, a[i, u]] for u in range(t, T))
                grad[t] = grad[t] + (torch.eye(ARMS, dtype=DT)[a[i, t]] - pi[t]) * ret
        w1 = w + ALPHA * grad / (N_PRE * T)
        total = total + prob(pre, w) * post_value(w1)
    return total


def exact_j_ours(w, inner):
    """J(w) using our inner_step (for inner settings with baseline / normalization)."""
    policy = ContextBandit()
    total = 0.0
    for pre in itertools.product(range(ARMS), repeat=N_PRE * T):
        new = inner_step(policy, {'w': w}, episodes(pre, w).task(0), ALPHA,
                         **inner.advantage_kwargs())
        total = total + prob(pre, w) * post_value(new['w'])
    return total


def expected_estimator(learner):
    """
    Exact expectation over pre and post outcomes of -grad meta_loss (one task).

    The outer losses average over the T valid steps of a rollout, so they estimate grad J / T:
    the result is multiplied by T.
    """
    w = learner.params['w']
    total = torch.zeros_like(w)
    for pre in itertools.product(range(ARMS), repeat=N_PRE * T):
        pre_ep = episodes(pre, w.detach())
        w1 = learner.adapt(pre_ep)['w'][0]
        p_pre = prob(pre, w.detach())
        for post in itertools.product(range(ARMS), repeat=T):
            loss, _ = learner.meta_loss(pre_ep, episodes(post, w1))
            (grad,) = torch.autograd.grad(loss, [w])
            total -= p_pre * prob(post, w1) * grad
    return total * T


def central_diff(fn, w, eps=1e-5):
    grad = torch.zeros_like(w)
    for idx in itertools.product(*(range(s) for s in w.shape)):
        e = torch.zeros_like(w)
        e[idx] = eps
        grad[idx] = (fn(w + e) - fn(w - e)) / (2 * eps)
    return grad


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


W0 = torch.tensor([[0.3, -0.2, 0.1], [-0.4, 0.5, 0.0]], dtype=DT)
PLAIN = InnerConfig(lr=ALPHA, gamma=1.0, baseline='none', normalize_advantages=False)
RICH = InnerConfig(lr=ALPHA, gamma=1.0, baseline='linear', normalize_advantages=True)
OUTER = {'post_baseline': 'none', 'normalize_post_advantages': False}


def learner_for(inner, estimator, cls=ProMPLearner, cfg=ProMPConfig):
    return cls(ContextBandit(), {'w': W0.clone()}, inner, cfg(estimator=estimator, **OUTER))


@pytest.fixture(scope='module')
def truth_plain():
    w = W0.clone().requires_grad_(True)
    (autograd,) = torch.autograd.grad(exact_j_independent(w), [w])
    with torch.no_grad():
        fd = central_diff(exact_j_independent, W0.clone())
    return autograd, fd


def test_independent_autograd_matches_finite_differences(truth_plain):
    autograd, fd = truth_plain
    assert rel_err(autograd, fd) < 1e-6


def test_our_inner_step_defines_the_same_objective():
    with torch.no_grad():
        assert torch.allclose(exact_j_ours(W0, PLAIN), exact_j_independent(W0), atol=1e-12)


def test_dice_estimator_is_unbiased(truth_plain):
    autograd, fd = truth_plain
    estimate = expected_estimator(learner_for(PLAIN, 'dice'))
    assert rel_err(estimate, autograd) < 1e-3
    assert rel_err(estimate, fd) < 1e-3


def test_dice_estimator_unbiased_with_baseline_and_normalization():
    with torch.no_grad():
        fd = central_diff(lambda w: exact_j_ours(w, RICH), W0.clone())
    estimate = expected_estimator(learner_for(RICH, 'dice'))
    assert rel_err(estimate, fd) < 1e-3


def test_naive_estimator_is_biased(truth_plain):
    """
    Show the naive estimator is off, so the tests above can fail.

    Without the score term through the pre-update sampling distribution the meta-gradient is
    biased (the peer-library bug).
    """
    autograd, _ = truth_plain
    naive = expected_estimator(learner_for(PLAIN, 'naive'))
    assert rel_err(naive, autograd) > 0.05


def test_trpo_uses_the_same_meta_gradient():
    pre = episodes([0, 1, 2, 2], W0)
    post = episodes([1, 0], W0)
    grads = []
    for cls, cfg in ((ProMPLearner, ProMPConfig), (TRPOLearner, TRPOConfig)):
        learner = learner_for(PLAIN, 'dice', cls, cfg)
        post = episodes([1, 0], learner.adapt(pre)['w'][0])
        loss, _ = learner.meta_loss(pre, post)
        grads.append(torch.autograd.grad(loss, [learner.params['w']])[0])
    assert torch.allclose(grads[0], grads[1], atol=1e-12)


def test_lvc_hessian_term_differs_from_vanilla():
    """LVC and vanilla inner steps move equally but differ in the meta-gradient (curvature)."""
    pre = episodes([0, 1, 2, 2], W0)
    lv, na = learner_for(PLAIN, 'lvc'), learner_for(PLAIN, 'naive')
    assert torch.allclose(lv.adapt(pre)['w'], na.adapt(pre)['w'], atol=1e-12)
    post = episodes([1, 0], lv.adapt(pre)['w'][0])
    g = [torch.autograd.grad(x.meta_loss(pre, post)[0], [x.params['w']])[0] for x in (lv, na)]
    assert (g[0] - g[1]).abs().max() > 1e-3


def test_first_order_maml_matches_its_definition():
    """FOMAML: the meta-gradient is the post-update gradient at w' applied to w."""
    learner = make_learner('fomaml', ContextBandit(), {'w': W0.clone()}, PLAIN, OUTER)
    pre = episodes([0, 1, 2, 2], W0)
    w1 = learner.adapt(pre)['w'][0]
    post = episodes([1, 0], w1)
    loss, _ = learner.meta_loss(pre, post)
    (meta_grad,) = torch.autograd.grad(loss, [learner.params['w']])
    w1 = w1.clone().requires_grad_(True)
    logp = ContextBandit().log_prob({'w': w1}, post.observations, post.actions)
    adv = torch.tensor([[[REWARDS[0, 1] + REWARDS[1, 0], REWARDS[1, 0]]]], dtype=DT)
    direct_loss = -clip_surrogate(logp, post.log_probs, adv, post.mask, 0.3).mean()
    (direct,) = torch.autograd.grad(direct_loss, [w1])
    assert torch.allclose(meta_grad, direct, atol=1e-12)
    second = learner_for(PLAIN, 'naive')
    (g2,) = torch.autograd.grad(second.meta_loss(pre, post)[0], [second.params['w']])
    assert (g2 - meta_grad).abs().max() > 1e-4  # first order really drops a term


def test_dice_objective_gives_exact_first_and_second_derivatives():
    """E[grad^k dice_objective] = grad^k E[return] for k = 1, 2 (one rollout, T = 2)."""
    policy = ContextBandit()

    def expected_return(w):
        return (torch.softmax(w, -1) * REWARDS).sum()

    grad_est = torch.zeros(W0.numel(), dtype=DT)
    hess_est = torch.zeros(W0.numel(), W0.numel(), dtype=DT)
    for arms in itertools.product(range(ARMS), repeat=T):
        ep = episodes(arms, W0).task(0)

        def surrogate(flat):
            logp = policy.log_prob({'w': flat.reshape(W0.shape)}, ep.observations, ep.actions)
            return dice_objective(logp, ep.rewards, ep.mask, gamma=1.0)

        p = prob(arms, W0)
        grad_est += p * torch.func.grad(surrogate)(W0.reshape(-1))
        hess_est += p * torch.func.jacrev(torch.func.grad(surrogate))(W0.reshape(-1))

    def flat_j(flat):
        return expected_return(flat.reshape(W0.shape))

    exact_hess = torch.func.jacrev(torch.func.grad(flat_j))(W0.reshape(-1))
    assert torch.allclose(grad_est, torch.func.grad(flat_j)(W0.reshape(-1)), atol=1e-12)
    assert torch.allclose(hess_est, exact_hess, atol=1e-12)
