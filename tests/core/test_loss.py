"""StyleGAN2Loss: phases, the loss terms against closed forms on small linear stand-in networks,
style mixing, augmentation on D inputs, state round trip, and one pass over the real networks."""

import numpy as np
import pytest
import torch

from tiny_nets import tiny_discriminator, tiny_generator
from torch_utils import training_stats
from training import loss as loss_module
from training.loss import Phase, StyleGAN2Loss

N, Z, W, NUM_WS, C, R = 4, 6, 5, 3, 3, 4  # batch, z_dim, w_dim, num_ws, channels, resolution


@pytest.fixture(autouse=True)
def _one_thread_and_fresh_stats():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    training_stats.reset_all()
    yield
    torch.set_num_threads(threads)


class LinearMapping(torch.nn.Module):
    """ws[:, i] = z @ A (same for every row); records the keyword arguments it was called with."""

    def __init__(self):
        super().__init__()
        self.A = torch.nn.Parameter(torch.randn(Z, W))
        self.calls = []

    def forward(self, z, c, **kwargs):
        self.calls.append(kwargs)
        return (z @ self.A).unsqueeze(1).repeat(1, NUM_WS, 1)


class LinearSynthesis(torch.nn.Module):
    """img = (sum over rows of ws) @ M, reshaped to [N, C, R, R]."""

    def __init__(self):
        super().__init__()
        self.M = torch.nn.Parameter(torch.randn(W, C * R * R) * 0.1)

    def forward(self, ws):
        return (ws.sum(1) @ self.M).view(-1, C, R, R)


class LinearD(torch.nn.Module):
    """logits = <img, K> + b, shape [N, 1]."""

    def __init__(self):
        super().__init__()
        self.K = torch.nn.Parameter(torch.randn(C, R, R) * 0.1)
        self.b = torch.nn.Parameter(torch.tensor(0.3))

    def forward(self, img, c):
        return (img * self.K).sum([1, 2, 3]).unsqueeze(1) + self.b


def make_loss(**kwargs):
    mapping, synthesis, D = LinearMapping(), LinearSynthesis(), LinearD()
    for module in (mapping, synthesis, D):
        module.requires_grad_(False)  # As the training loop leaves them between phases.
    kwargs.setdefault('style_mixing_prob', 0)
    loss = StyleGAN2Loss(device='cpu', G_mapping=mapping, G_synthesis=synthesis, D=D, batch_gpu=N, **kwargs)
    return loss, mapping, synthesis, D


def enable(*modules):
    for m in modules:
        m.requires_grad_(True)


def collect(name):
    collector = training_stats.Collector(regex='.*')
    collector.update()
    return collector.mean(name), collector.num(name)


def inputs():
    return torch.randn(N, C, R, R), torch.zeros(N, 0), torch.randn(N, Z), torch.zeros(N, 0)

# ---------------------------------------------------------------------------------------------


def test_phases_lazy_and_combined():
    loss, *_ = make_loss()
    assert loss.get_phases(4, 16) == [Phase('Gmain', 'G', 1), Phase('Greg', 'G', 4),
                                      Phase('Dmain', 'D', 1), Phase('Dreg', 'D', 16)]
    assert loss.get_phases(None, None) == [Phase('Gboth', 'G', 1), Phase('Dboth', 'D', 1)]
    with pytest.raises(ValueError, match="module must be 'G' or 'D'"):
        Phase('x', 'E', 1)
    with pytest.raises(ValueError, match='interval'):
        Phase('x', 'G', 0)
    with pytest.raises(ValueError, match="unknown phase 'Gfoo'"):
        loss.accumulate_gradients('Gfoo', *inputs(), gain=1, cur_nimg=0)


def test_r1_matches_closed_form():
    # D linear in the image: dD/dx = K for every sample, so R1 = gamma/2 * |K|^2 and its gradient
    # with respect to K is gamma * K (times gain).
    gamma, gain = 3.0, 16.0
    loss, mapping, synthesis, D = make_loss(r1_gamma=gamma)
    enable(D)
    real_img, real_c, gen_z, gen_c = inputs()
    loss.accumulate_gradients('Dreg', real_img, real_c, gen_z, gen_c, gain=gain, cur_nimg=0)
    K = D.K.detach()
    torch.testing.assert_close(D.K.grad, gamma * gain * K)
    assert D.b.grad is None or float(D.b.grad) == 0.0  # R1 does not depend on the bias
    mean, num = collect('Loss/r1_penalty')
    assert num == N
    assert mean == pytest.approx(float(K.square().sum()), rel=1e-5)
    assert collect('Loss/D/reg')[0] == pytest.approx(gamma / 2 * float(K.square().sum()), rel=1e-5)


def test_d_main_is_nonsaturating_logistic():
    loss, mapping, synthesis, D = make_loss(r1_gamma=0)
    enable(D)
    real_img, real_c, gen_z, gen_c = inputs()
    loss.accumulate_gradients('Dmain', real_img, real_c, gen_z, gen_c, gain=1, cur_nimg=0)
    got = [D.K.grad.clone(), D.b.grad.clone()]

    # Reference: softplus(D(G(z))) + softplus(-D(x)), each averaged over the batch.
    D.zero_grad(set_to_none=True)
    with torch.no_grad():
        fake = synthesis(mapping(gen_z, gen_c))
    ref = torch.nn.functional.softplus(D(fake, gen_c)).mean() + torch.nn.functional.softplus(-D(real_img, real_c)).mean()
    ref.backward()
    torch.testing.assert_close(got[0], D.K.grad)
    torch.testing.assert_close(got[1], D.b.grad)
    assert mapping.A.grad is None and synthesis.M.grad is None  # G is not trained in a D phase
    stats = training_stats.Collector()
    stats.update()
    assert stats.mean('Loss/D/loss') == pytest.approx(float(ref.detach()), rel=1e-5)
    assert stats.num('Loss/signs/real') == N  # ADA reads this one


def test_g_main_is_nonsaturating_logistic():
    loss, mapping, synthesis, D = make_loss()
    enable(mapping, synthesis)
    real_img, real_c, gen_z, gen_c = inputs()
    loss.accumulate_gradients('Gmain', real_img, real_c, gen_z, gen_c, gain=2, cur_nimg=0)
    got = synthesis.M.grad.clone()
    synthesis.zero_grad(set_to_none=True)
    mapping.zero_grad(set_to_none=True)
    ref = torch.nn.functional.softplus(-D(synthesis(mapping(gen_z, gen_c)), gen_c)).mean() * 2
    ref.backward()
    torch.testing.assert_close(got, synthesis.M.grad)
    assert D.K.grad is None  # D parameters do not require grad in a G phase


def test_path_length_mean_and_penalty():
    # img = (sum_i ws_i) @ M, so d<img, noise>/d ws_i = noise @ M^T for every row i and the
    # path length is |noise_flat @ M^T| per sample.
    decay, weight = 0.01, 2.0
    loss, mapping, synthesis, D = make_loss(pl_decay=decay, pl_weight=weight, pl_batch_shrink=2)
    enable(mapping, synthesis)
    real_img, real_c, gen_z, gen_c = inputs()
    torch.manual_seed(123)
    loss.accumulate_gradients('Greg', real_img, real_c, gen_z, gen_c, gain=4, cur_nimg=0)
    torch.manual_seed(123)
    noise = torch.randn(N // 2, C, R, R) / np.sqrt(R * R)
    lengths = (noise.flatten(1) @ synthesis.M.detach().T).norm(dim=1)
    expected_mean = decay * lengths.mean()
    assert float(loss.pl_mean) == pytest.approx(float(expected_mean), rel=1e-5)
    penalty_mean, num = collect('Loss/pl_penalty')
    assert num == N // 2
    assert penalty_mean == pytest.approx(float((lengths - expected_mean).square().mean()), rel=1e-4)
    assert synthesis.M.grad is not None and torch.isfinite(synthesis.M.grad).all()

    state = loss.state_dict()
    other, *_ = make_loss()
    other.load_state_dict(state)
    assert float(other.pl_mean) == float(loss.pl_mean)
    with pytest.raises(ValueError, match='unexpected loss state'):
        other.load_state_dict({'pl_mean': 0.0, 'bogus': 1})


def test_style_mixing_replaces_the_tail_without_w_avg_update():
    loss, mapping, synthesis, D = make_loss(style_mixing_prob=1.0)
    z = torch.randn(N, Z)
    ws_plain = mapping(z, None)
    mapping.calls.clear()
    _img, ws = loss.run_G(z, torch.zeros(N, 0))
    assert len(mapping.calls) == 2 and mapping.calls[1] == {'skip_w_avg_update': True}
    torch.testing.assert_close(ws[:, 0], ws_plain[:, 0])      # cutoff >= 1 keeps the first row
    assert not torch.allclose(ws[:, -1], ws_plain[:, -1])      # cutoff <= num_ws - 1 mixes the last


def test_augment_pipe_sees_every_d_input():
    class CountingPipe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.count = 0

        def forward(self, x):
            self.count += x.shape[0]
            return x

    pipe = CountingPipe()
    loss, mapping, synthesis, D = make_loss(augment_pipe=pipe, r1_gamma=1)
    enable(D)
    loss.accumulate_gradients('Dboth', *inputs(), gain=1, cur_nimg=0)
    assert pipe.count == 2 * N  # fakes and reals


def test_d_phase_without_data_is_an_error():
    loss, mapping, synthesis, D = make_loss()
    enable(D)
    _, _, gen_z, gen_c = inputs()
    with pytest.raises(ValueError, match='needs real images'):
        loss.accumulate_gradients('Dmain', None, None, gen_z, gen_c, gain=1, cur_nimg=0)


def test_real_networks_every_phase_gives_finite_gradients():
    G = tiny_generator(8, resolution=8, channel_base=64)
    D = tiny_discriminator(resolution=8, channel_base=64)
    G.train().requires_grad_(False)
    D.train().requires_grad_(False)
    loss = loss_module.StyleGAN2Loss(device='cpu', G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, batch_gpu=4)
    real = torch.rand(4, 3, 8, 8) * 2 - 1
    z, c = torch.randn(4, 8), torch.zeros(4, 0)
    for phase in loss.get_phases(4, 16):
        net = G if phase.module == 'G' else D
        net.requires_grad_(True)
        net.zero_grad(set_to_none=True)
        loss.accumulate_gradients(phase.name, real, c, z, c, gain=phase.interval, cur_nimg=0)
        grads = [p.grad for p in net.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), phase.name
        net.requires_grad_(False)
    stats = training_stats.Collector()
    stats.update()
    for name in ('Loss/G/loss', 'Loss/G/reg', 'Loss/D/loss', 'Loss/D/reg', 'Loss/scores/real', 'Loss/signs/fake'):
        assert stats.num(name) > 0 and np.isfinite(stats.mean(name)), name
    assert float(loss.pl_mean) > 0
