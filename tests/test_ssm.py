"""Tests for vitools.models.ssm: Kalman filter, exact proposals, learnable proposal."""
import pytest
import torch
from torch.distributions import MultivariateNormal

from vitools import smc
from vitools.models.ssm import LearnableProposal, LinearGaussianProposal, LinearGaussianSSM, gaussian_log_prob


def _model():
    return LinearGaussianSSM(A=[[0.9, 0.2], [-0.1, 0.7]], C=[[1.0, 0.5], [0.0, 1.0], [0.3, -0.4]],
                             Q=[[0.5, 0.1], [0.1, 0.3]], R=[[0.4, 0.0, 0.1], [0.0, 0.6, 0.0], [0.1, 0.0, 0.5]],
                             mu0=[0.3, -0.2], Q0=[[1.0, 0.2], [0.2, 0.8]], dtype=torch.float64)


def brute_force_log_likelihood(ssm, x):
    """log N(vec(x); mean, cov) of the joint Gaussian of x_{1:T}, built term by term."""
    steps, dz = x.shape[1], ssm.latent_dim
    means, covs = [ssm.mu0], {(0, 0): ssm.Q0}
    for t in range(1, steps):
        means.append(ssm.A @ means[-1])
        covs[(t, t)] = ssm.A @ covs[(t - 1, t - 1)] @ ssm.A.T + ssm.Q
    for s in range(steps):
        for t in range(s + 1, steps):
            covs[(s, t)] = covs[(s, t - 1)] @ ssm.A.T          # Cov(z_s, z_t) = Var(z_s) (A^T)^(t-s)
            covs[(t, s)] = covs[(s, t)].T
    zcov = torch.cat([torch.cat([covs[(s, t)] for t in range(steps)], 1) for s in range(steps)], 0)
    C = torch.block_diag(*[ssm.C] * steps)
    cov = C @ zcov @ C.T + torch.block_diag(*[ssm.R] * steps)
    mean = C @ torch.cat(means)
    assert zcov.shape == (steps * dz, steps * dz)
    return MultivariateNormal(mean, cov).log_prob(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_kalman_matches_the_brute_force_joint_gaussian(steps):
    ssm = _model()
    _, x = ssm.sample(3, steps, seed=steps)
    torch.testing.assert_close(ssm.log_likelihood(x), brute_force_log_likelihood(ssm, x), rtol=1e-10, atol=1e-10)
    wrong = LinearGaussianSSM(ssm.A * 0.5, ssm.C, ssm.Q, ssm.R, ssm.mu0, ssm.Q0)
    assert (wrong.log_likelihood(x) - brute_force_log_likelihood(ssm, x)).abs().max() > 1e-3 or steps == 1


def test_sample_has_the_model_moments():
    ssm = LinearGaussianSSM.scalar(a=0.5, q=1.0, r=0.25, mu0=1.0, q0=2.0, dtype=torch.float64)
    z, x = ssm.sample(40_000, 2, seed=0)
    n = z.shape[0]
    # z_1 ~ N(1, 2); z_2 has mean 0.5 and variance 0.25 * 2 + 1 = 1.5; x_2 - z_2 ~ N(0, 0.25)
    for value, mean, var in ((z[:, 0, 0], 1.0, 2.0), (z[:, 1, 0], 0.5, 1.5), ((x - z)[:, 1, 0], 0.0, 0.25)):
        assert abs((value.mean() - mean) / (var / n) ** 0.5) < 4
        assert abs(value.var() / var - 1) < 4 * (2 / n) ** 0.5


def test_exact_proposals_are_the_conditional_distributions():
    """Filtering proposal at t = 0 is p(z_1 | x_1); the smoothing proposal at t = 0 is
    p(z_1 | x_{1:T}), whose mean is the Kalman smoother's, checked by brute force."""
    ssm = LinearGaussianSSM.scalar(a=0.8, q=0.5, r=0.3, dtype=torch.float64)
    _, x = ssm.sample(1, 3, seed=1)
    # brute force: the joint Gaussian of (z_1, x_1, x_2, x_3)
    a, q, r = 0.8, 0.5, 0.3
    var_z = [0.5, 0.8**2 * 0.5 + q, 0.8**2 * (0.8**2 * 0.5 + q) + q]
    cov_z1_x = torch.tensor([[var_z[0], a * var_z[0], a * a * var_z[0]]], dtype=torch.float64)
    cov_x = torch.tensor([[var_z[min(s, t)] * a ** abs(s - t) for t in range(3)] for s in range(3)],
                         dtype=torch.float64) + r * torch.eye(3, dtype=torch.float64)
    gain = cov_z1_x @ torch.linalg.inv(cov_x)
    smooth_mean = (gain @ x[0, :, 0]).item()
    smooth_var = (var_z[0] - gain @ cov_z1_x.T).item()
    q_s = ssm.smoothing_proposal(x)
    assert q_s.c[0, 0, 0].item() == pytest.approx(smooth_mean, abs=1e-10)
    assert q_s.scale[0, 0, 0].item() ** 2 == pytest.approx(smooth_var, abs=1e-10)
    q_f = ssm.filtering_proposal(x)
    post_var = 1 / (1 / 0.5 + 1 / r)
    assert q_f.c[0, 0, 0].item() == pytest.approx(post_var * x[0, 0, 0].item() / r, abs=1e-10)
    assert q_f.scale[0, 0, 0].item() ** 2 == pytest.approx(post_var, abs=1e-10)
    # at the last step the two coincide (no future left)
    torch.testing.assert_close(q_s.F[:, -1], q_f.F[:, -1])
    torch.testing.assert_close(q_s.c[:, -1], q_f.c[:, -1])


def test_learnable_proposal_starts_as_stated_and_trains():
    ssm = LinearGaussianSSM.scalar()
    _, x = ssm.sample(1, 5, seed=0)
    learn = LearnableProposal(5, init_scale=2.0)
    q = learn.proposal()
    assert isinstance(q, LinearGaussianProposal) and q.F.shape == (1, 5, 1, 1)
    torch.testing.assert_close(q.scale, torch.full((1, 5, 1), 2.0))
    optimizer = torch.optim.Adam(learn.parameters(), lr=0.05)
    before = smc.iwae(ssm.with_proposal(learn), x.expand(256, -1, -1), 4, seed=0).log_z.mean().item()
    for step in range(150):
        loss = -smc.iwae(ssm.with_proposal(learn), x.expand(64, -1, -1), 4, seed=step).surrogate.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = smc.iwae(ssm.with_proposal(learn), x.expand(256, -1, -1), 4, seed=0).log_z.mean().item()
    exact = ssm.log_likelihood(x).item()
    assert before < after <= exact + 0.01
    assert exact - after < 0.5 * (exact - before)


def test_gaussian_log_prob_matches_torch():
    L = torch.tensor([[1.0, 0.0], [0.3, 0.5]], dtype=torch.float64)
    v, m = torch.randn(4, 3, 2, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    torch.testing.assert_close(gaussian_log_prob(v, m, L), MultivariateNormal(m, scale_tril=L).log_prob(v))


def test_bad_input():
    with pytest.raises(ValueError, match="Q must be a symmetric positive-definite matrix"):
        LinearGaussianSSM([[1.0]], [[1.0]], [[-1.0]], [[1.0]])
    with pytest.raises(ValueError, match="R must be a symmetric positive-definite matrix"):
        LinearGaussianSSM([[1.0]], [[1.0], [1.0]], [[1.0]], [[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"C must be a matrix of shape \(None, 1\)"):
        LinearGaussianSSM([[1.0]], [[1.0, 2.0]], [[1.0]], [[1.0]])
    with pytest.raises(ValueError, match=r"A must be a matrix of shape \(1, 1\)"):
        LinearGaussianSSM([[1.0, 0.0]], [[1.0]], [[1.0]], [[1.0]])
    with pytest.raises(ValueError, match="A must be finite"):
        LinearGaussianSSM([[float("nan")]], [[1.0]], [[1.0]], [[1.0]])
    with pytest.raises(ValueError, match="mu0 must end in shape"):
        LinearGaussianSSM([[1.0]], [[1.0]], [[1.0]], [[1.0]], mu0=[0.0, 1.0])
    with pytest.raises(ValueError, match="q must be positive"):
        LinearGaussianSSM.scalar(q=0.0)
    ssm = LinearGaussianSSM.scalar()
    with pytest.raises(ValueError, match="x must end in shape"):
        ssm.log_likelihood(torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        ssm.sample(2, 0)
    with pytest.raises(ValueError, match="batch must be an integer >= 1"):
        ssm.sample(0, 2)
    with pytest.raises(ValueError, match="init_scale must be positive"):
        LearnableProposal(3, init_scale=-1.0)
    with pytest.raises(ValueError, match="proposal must be a LinearGaussianProposal"):
        ssm.with_proposal("smoothing")
    with pytest.raises(ValueError, match="does not fit x"):
        smc.iwae(ssm.with_proposal(ssm.prior_proposal(2)), torch.zeros(1, 3, 1), 2)


def test_proposal_distance_is_zero_for_itself_and_positive_otherwise():
    from vitools.models.ssm import LinearGaussianSSM, proposal_distance

    ssm = LinearGaussianSSM.scalar(0.9, 1.0, 0.5, 0.3)
    _, x = ssm.sample(1, 10, seed=0)
    filtering, smoothing = ssm.filtering_proposal(x), ssm.smoothing_proposal(x)
    assert proposal_distance(filtering, filtering) == 0
    assert proposal_distance(filtering, smoothing) > 0
