"""StyleGAN3 networks on a GPU (the filtered leaky ReLU runs its reference path there) against the
official CPU outputs of the stylegan3_tiny fixtures.

Tolerances: float32 on the GPU with TF32 off, images 5e-4 (cuDNN and cuBLAS sum in other orders;
the CPU-to-CPU spread is 2e-6 on values up to 1.1). The fp16 layers (all of them at 32 px, as
stored) against the same weights in float32: mean |diff| <= 0.01, max <= 0.1 (float16 keeps 11 bits,
over 15 layers); the output stays float32.
"""

import copy

import numpy as np
import pytest
import torch

import sg3_fixture

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')


@pytest.fixture(autouse=True)
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize('cfg', sg3_fixture.CONFIGS)
def test_gpu_matches_the_official_cpu_outputs(cfg):
    ref = {k: torch.from_numpy(np.asarray(v)) for k, v in sg3_fixture.arrays(cfg, 'reference_outputs').items()}
    G = sg3_fixture.fill(sg3_fixture.build_G(cfg), cfg, 'G_ema').cuda()
    z, c = ref['z'].cuda(), ref['c'].cuda()
    with torch.no_grad():
        fp32 = G(z, c, truncation_psi=0.7, force_fp32=True)
        fp16 = G(z, c, truncation_psi=0.7)
    assert fp32.dtype == fp16.dtype == torch.float32
    expected = ref['gema_G_forward_psi07']
    torch.testing.assert_close(fp32.cpu(), expected, atol=5e-4, rtol=1e-5)
    diff = (fp16.cpu() - expected).abs()
    assert torch.isfinite(fp16).all() and diff.mean() <= 0.01 and diff.max() <= 0.1, (diff.mean(), diff.max())


def test_gpu_training_step_matches_cpu():
    """One backward pass through G on both devices: the gradients agree (float32, TF32 off)."""
    G_cpu = sg3_fixture.fill(sg3_fixture.build_G('r'), 'r', 'G').requires_grad_(True)
    G_gpu = copy.deepcopy(G_cpu).cuda()
    z = torch.randn([4, 32], generator=torch.Generator().manual_seed(0))
    c = torch.eye(3)[[0, 1, 2, 0]]
    for G, device in ((G_cpu, 'cpu'), (G_gpu, 'cuda')):
        G(z.to(device), c.to(device), force_fp32=True).square().mean().backward()
    for (name, p), q in zip(G_cpu.named_parameters(), G_gpu.parameters()):
        scale = p.grad.abs().max().item() + 1e-12
        torch.testing.assert_close(q.grad.cpu() / scale, p.grad / scale, atol=1e-3, rtol=0, msg=name)
