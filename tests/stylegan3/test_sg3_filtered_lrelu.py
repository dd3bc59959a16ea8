"""torch_utils/ops/filtered_lrelu.py: the reference filtered leaky ReLU of StyleGAN3."""

import numpy as np
import pytest
import torch

from torch_utils.ops import bias_act
from torch_utils.ops import filtered_lrelu
from torch_utils.ops import upfirdn2d

pytestmark = pytest.mark.usefixtures('one_thread')


def unfused(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    """The definition written as separate upfirdn2d / bias_act calls (downsampling by dropping samples)."""
    x = x + b.reshape(1, -1, 1, 1)
    x = upfirdn2d.upfirdn2d_ref(x, fu, up=up, padding=padding, gain=up ** 2, flip_filter=flip_filter)
    x = torch.nn.functional.leaky_relu(x, slope) * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d.upfirdn2d_ref(x, fd, down=down, flip_filter=flip_filter)


@pytest.mark.parametrize('matrix_max_size', [0, 256])  # depthwise convolutions / matrix products
@pytest.mark.parametrize('radial', [False, True])
@pytest.mark.parametrize('flip_filter', [False, True])
@pytest.mark.parametrize('up, down, padding', [(2, 2, [9, 8, 9, 8]), (4, 2, [-2, -5, -1, -4]), (1, 1, 0)])
def test_matches_the_unfused_definition(radial, flip_filter, up, down, padding, matrix_max_size, monkeypatch):
    monkeypatch.setattr(filtered_lrelu, 'MATRIX_MAX_SIZE', matrix_max_size)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn([2, 3, 11, 13], generator=gen) * 3
    b = torch.randn([3], generator=gen)
    fu = torch.rand([6 * up], generator=gen) if up > 1 else None       # asymmetric: flips matter
    fd_taps = 6 * down
    fd = (torch.rand([fd_taps, fd_taps] if radial else [fd_taps], generator=gen)) if down > 1 else None
    args = dict(b=b, up=up, down=down, padding=padding, gain=np.sqrt(2), slope=0.2, clamp=4.0, flip_filter=flip_filter)
    ours = filtered_lrelu.filtered_lrelu(x, fu, fd, impl='ref', **args)
    expected = unfused(x, fu, fd, **args)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    px0, px1, py0, py1 = upfirdn2d._parse_padding(padding)
    taps = lambda f: 1 if f is None else f.shape[-1]
    assert ours.shape[3] == filtered_lrelu.output_size(13, up, down, px0, px1, taps(fu), taps(fd))
    assert ours.shape[2] == filtered_lrelu.output_size(11, up, down, py0, py1, taps(fu), taps(fd))


def test_identity_filters_are_bias_lrelu_gain_clamp():
    x = torch.randn([2, 4, 5, 5]) * 100
    b = torch.randn([4])
    y = filtered_lrelu.filtered_lrelu(x, b=b, gain=1.5, slope=0.1, clamp=30)
    expected = bias_act.bias_act_ref(x, b, act='lrelu', alpha=0.1, gain=1.5, clamp=30)
    torch.testing.assert_close(y, expected, atol=1e-6, rtol=1e-6)
    assert y.abs().max() == 30  # the clamp is reached


def test_gradients_float64():
    x = torch.randn([1, 2, 5, 5], dtype=torch.float64, requires_grad=True)
    b = torch.randn([2], dtype=torch.float64, requires_grad=True)
    fu, fd = torch.rand([4]), torch.rand([4, 4])
    func = lambda x, b: filtered_lrelu.filtered_lrelu(x, fu, fd, b, up=2, down=2, padding=[2, 1, 2, 1], clamp=None)
    assert torch.autograd.gradcheck(func, (x, b))


def test_cuda_impl_on_cpu_runs_the_reference():
    x, fu = torch.randn([1, 2, 6, 6]), torch.rand([12])
    args = dict(up=2, down=2, padding=[10, 10, 10, 10])
    assert torch.equal(filtered_lrelu.filtered_lrelu(x, fu, fu, impl='cuda', **args),
                       filtered_lrelu.filtered_lrelu(x, fu, fu, impl='ref', **args))


def test_bad_arguments():
    x = torch.randn([1, 2, 6, 6])
    with pytest.raises(ValueError, match="impl must be 'ref' or 'cuda'"):
        filtered_lrelu.filtered_lrelu(x, impl='triton')
    with pytest.raises(ValueError, match='up and down must be integers'):
        filtered_lrelu.filtered_lrelu(x, up=0)
    with pytest.raises(ValueError, match='leaves no output pixels'):
        filtered_lrelu.filtered_lrelu(x, padding=-4)
    with pytest.raises(ValueError, match='4-D'):
        filtered_lrelu.filtered_lrelu(x[0])
