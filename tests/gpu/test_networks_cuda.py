"""G and D with the CUDA ops on a GPU against the official CPU outputs of the stylegan2_tiny
fixture, their fp16 layers against the same networks on the CPU, and a few training steps
(R1 included) on CPU and GPU from the same state.

Tolerances, documented here and in the README ("GPU"):
- fp32 on the GPU (TF32 off) vs the official CPU outputs: images and logits atol 5e-4, rtol 1e-5
  (the fixture's own CPU thread-count spread is 1.5e-6 on values up to 12; cuDNN picks other
  convolution algorithms, and the kernels sum in another order).
- fp16 layers (num_fp16_res=2: the 16^2 and 32^2 blocks, conv_clamp 256) on the GPU vs the same
  weights on the CPU, where those blocks run in float32: mean |diff| <= 0.01 and max |diff| <= 0.15
  on images of values up to ~12 (float16 keeps 11 bits: ~5e-4 relative per rounding, over two
  blocks of modulated convolutions); D logits atol 0.05.
- Training, same state and inputs, noise and style mixing fixed: first-step gradients of G and D
  (R1's double backward included) agree to 1e-3 of their scale; after 3 Adam steps at lr 0.002
  (which move the image by ~1.7) the images differ by at most 0.05 and the parameters by a mean
  of at most 5% of the 3 * lr a
  parameter can move (Adam's first steps amplify tiny gradient differences only where the
  gradient itself is ~0).
"""

import copy

import numpy as np
import pytest
import torch

from conftest import require_fixtures
from test_networks_parity import build_discriminator, build_generator, load_from_npz, read_listing
from torch_utils import custom_ops
from torch_utils.ops import upfirdn2d_cuda
from training import networks
from training.loss import StyleGAN2Loss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')

FP32_TOL = dict(atol=5e-4, rtol=1e-5)


@pytest.fixture(autouse=True)
def no_tf32():
    """Plain float32 arithmetic in cuBLAS/cuDNN (torch lets cuDNN use TF32 by default)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope='module')
def fx():
    root = require_fixtures('stylegan2_tiny')
    state_dicts = np.load(root / 'state_dicts.npz')
    listing = read_listing(root / 'state_dict_listing.txt')
    with np.load(root / 'reference_outputs.npz') as data:
        ref = {k: torch.from_numpy(data[k]) for k in data.files}
    with np.load(root / 'reference_outputs_extra.npz') as data:
        ref.update({k: torch.from_numpy(data[k]) for k in data.files})
    return dict(G_ema=load_from_npz(build_generator(), state_dicts, 'G_ema', listing),
                G=load_from_npz(build_generator(), state_dicts, 'G', listing),
                D=load_from_npz(build_discriminator(), state_dicts, 'D', listing), ref=ref)


def assert_close(actual, expected, what, atol, rtol=0.0):
    diff = (actual.double().cpu() - expected.double().cpu()).abs()
    assert torch.isfinite(actual).all(), f'{what}: non-finite values'
    assert diff.max() <= atol + rtol * expected.double().abs().max(), f'{what}: max |diff| {diff.max():.3g} > {atol}'
    return diff.max().item()


def test_fp32_outputs_match_the_official_cpu_reference(fx):
    ref = fx['ref']
    G_ema, D = copy.deepcopy(fx['G_ema']).cuda(), copy.deepcopy(fx['D']).cuda()
    z, c = ref['z'].cuda(), ref['c'].cuda()
    with torch.no_grad():
        ws = G_ema.mapping(z, c)
        assert_close(ws, ref['gema_ws_psi1'], 'ws', atol=1e-5)
        img = G_ema.synthesis(ref['gema_ws_psi1'].cuda(), noise_mode='const')
        assert_close(img, ref['gema_img_psi1_const'], 'synthesis', **FP32_TOL)
        img_unfused = G_ema.synthesis(ref['gema_ws_psi1'].cuda(), noise_mode='const', fused_modconv=False)
        assert_close(img_unfused, ref['gema_img_psi1_const_unfused'], 'synthesis unfused', **FP32_TOL)
        assert_close(G_ema(z, c, noise_mode='const'), ref['gema_G_forward_const'], 'G_ema', **FP32_TOL)
        logits = D(ref['gema_G_forward_const'].cuda(), c)
        assert_close(logits, ref['d_logits_gema_img'], 'D logits', **FP32_TOL)
    # The CUDA kernels ran (not the reference fallback).
    assert upfirdn2d_cuda._plugin is not None
    assert any(key[0] == 'bias_act_plugin' for key in custom_ops._plugins)


def _with_fp16_layers(net: torch.nn.Module, build, channels_last: bool) -> torch.nn.Module:
    """The same weights in a network whose two highest resolutions are fp16 blocks (conv_clamp
    256), optionally channels-last there (train.py --nhwc)."""
    fp16 = build(num_fp16_res=2, conv_clamp=256, channels_last=channels_last)
    fp16.load_state_dict(net.state_dict())
    return fp16.eval().requires_grad_(False)


def _fp16_generator(channels_last, **kwargs):
    return networks.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                              mapping_kwargs=dict(num_layers=2),
                              synthesis_kwargs=dict(channel_base=192, channel_max=24,
                                                    fp16_channels_last=channels_last, **kwargs))


def _fp16_discriminator(channels_last, **kwargs):
    return networks.Discriminator(c_dim=0, img_resolution=32, img_channels=3, architecture='resnet',
                                  channel_base=192, channel_max=24, block_kwargs=dict(fp16_channels_last=channels_last),
                                  mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=4), **kwargs)


@pytest.mark.parametrize('channels_last', [False, True])
def test_fp16_layers_match_the_cpu_within_fp16_rounding(fx, channels_last):
    ref = fx['ref']
    G_cpu = _with_fp16_layers(fx['G_ema'], _fp16_generator, channels_last)
    D_cpu = _with_fp16_layers(fx['D'], _fp16_discriminator, channels_last)
    G_gpu, D_gpu = copy.deepcopy(G_cpu).cuda(), copy.deepcopy(D_cpu).cuda()
    ws = ref['gema_ws_psi1']
    with torch.no_grad():
        img_cpu = G_cpu.synthesis(ws, noise_mode='const')
        img_gpu = G_gpu.synthesis(ws.cuda(), noise_mode='const')
        # The fp16 blocks really ran in float16 on the GPU (and float32 on the CPU).
        assert G_gpu.synthesis.b32.use_fp16 and img_gpu.dtype == torch.float32
        diff = (img_gpu.cpu() - img_cpu).abs()
        logits_cpu = D_cpu(img_cpu, ref['c'])
        logits_gpu = D_gpu(img_cpu.cuda(), ref['c'].cuda())
    print(f'\nfp16 layers (channels_last={channels_last}): image |diff| mean {diff.mean():.2e} max '
          f'{diff.max():.2e}; D logits max |diff| {(logits_gpu.cpu() - logits_cpu).abs().max():.2e}')
    assert torch.isfinite(img_gpu).all() and diff.mean() <= 0.01 and diff.max() <= 0.15, \
        f'fp16 image |diff| mean {diff.mean():.3g} max {diff.max():.3g}'
    assert_close(logits_gpu, logits_cpu, 'D logits fp16', atol=0.05)
    # fp16 is not bitwise the float32 result: the float16 path was taken.
    assert diff.max() > 0

# ---------------------------------------------------------------------------------------------
# Training steps on CPU and GPU from the same state.


class _ConstNoiseSynthesis(torch.nn.Module):
    """The synthesis network with noise_mode='const' (device RNGs differ between CPU and GPU)."""

    def __init__(self, synthesis):
        super().__init__()
        self.synthesis = synthesis
        self.num_ws, self.w_dim = synthesis.num_ws, synthesis.w_dim

    def forward(self, ws, **kwargs):
        return self.synthesis(ws, noise_mode='const')


def _train(G, D, device, steps: int, lr: float = 0.002):
    """`steps` of Gboth + Dboth (R1 every step, no path length, no style mixing); returns the
    first step's gradients and the losses of every step."""
    G, D = copy.deepcopy(G).to(device).train(), copy.deepcopy(D).to(device).train()
    loss = StyleGAN2Loss(device, G.mapping, _ConstNoiseSynthesis(G.synthesis), D, style_mixing_prob=0,
                         r1_gamma=10, pl_weight=0)
    opts = {name: torch.optim.Adam(net.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-8)
            for name, net in (('G', G), ('D', D))}
    gen = torch.Generator().manual_seed(123)
    first_grads = {}
    for step in range(steps):
        z = torch.randn([4, 32], generator=gen).to(device)
        real = (torch.rand([4, 3, 32, 32], generator=gen) * 2 - 1).to(device)
        c = torch.zeros([4, 0], device=device)
        for phase, name, net in (('Gboth', 'G', G), ('Dboth', 'D', D)):
            net.requires_grad_(True)
            opts[name].zero_grad(set_to_none=True)
            loss.accumulate_gradients(phase, real, c, z, c, 1.0, 0)
            net.requires_grad_(False)
            if step == 0:
                first_grads.update({f'{name}.{k}': p.grad.detach().cpu().clone()
                                    for k, p in net.named_parameters() if p.grad is not None})
            opts[name].step()
    return G.cpu(), D.cpu(), first_grads


def test_training_steps_on_cpu_and_gpu_stay_together(fx):
    G0, D0 = fx['G'], fx['D']
    steps, lr = 3, 0.002
    G_cpu, D_cpu, grads_cpu = _train(G0, D0, torch.device('cpu'), steps, lr)
    G_gpu, D_gpu, grads_gpu = _train(G0, D0, torch.device('cuda'), steps, lr)
    assert grads_cpu.keys() == grads_gpu.keys() and any(k.startswith('D.') for k in grads_cpu)
    worst = max((grads_gpu[k] - g).abs().max().item() / (g.abs().max().item() + 1e-12) for k, g in grads_cpu.items()
                if g.abs().max() > 1e-6)
    assert worst <= 1e-3, f'first-step gradients differ by {worst:.3g} of their scale'
    moved = []
    for net_cpu, net_gpu in ((G_cpu, G_gpu), (D_cpu, D_gpu)):
        for (name, p), q in zip(net_cpu.named_parameters(), net_gpu.parameters()):
            moved.append((p - q).abs().flatten())
    param_drift = torch.cat(moved).mean().item() / (steps * lr)
    ref = fx['ref']
    with torch.no_grad():
        img_cpu = G_cpu.synthesis(ref['gema_ws_psi1'], noise_mode='const')
        img_gpu = G_gpu.synthesis(ref['gema_ws_psi1'], noise_mode='const')
        img_start = G0.synthesis(ref['gema_ws_psi1'], noise_mode='const')
    print(f'\ntraining CPU vs GPU: first-step gradient rel. diff {worst:.2e}; after {steps} steps mean '
          f'|param diff| {param_drift:.2%} of {steps}*lr, image max |diff| {(img_gpu - img_cpu).abs().max():.2e} '
          f'(training moved the image by {(img_cpu - img_start).abs().max():.2e})')
    assert param_drift <= 0.05
    assert (img_gpu - img_cpu).abs().max() <= 0.05
    assert (img_cpu - img_start).abs().max() > 0.02  # the steps did change the network


def test_fused_adam_matches_the_default_adam(fx):
    # bench_gpu's `fused_adam` variant: one multi-tensor CUDA kernel instead of the foreach path.
    # Same update up to float32 rounding of the same formula.
    nets = [copy.deepcopy(fx['G']).cuda() for _ in range(2)]
    gen = torch.Generator().manual_seed(9)
    grads = [torch.randn(p.shape, generator=gen).cuda() * 1e-2 for p in nets[0].parameters()]
    for net, fused in zip(nets, (False, True)):
        opt = torch.optim.Adam(net.parameters(), lr=0.002, betas=(0.0, 0.99), eps=1e-8, fused=fused)
        for _ in range(3):
            for p, g in zip(net.parameters(), grads):
                p.grad = g.clone()
            opt.step()
    for (name, p), q in zip(nets[0].named_parameters(), nets[1].parameters()):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7, msg=name)
