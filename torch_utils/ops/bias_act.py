"""Fused bias + activation + gain + clamp: `y = clamp(act(x + b) * gain, -clamp, +clamp)`.

`impl='ref'` is the pure-PyTorch definition; `impl='cuda'` runs our CUDA kernel for CUDA tensors
(CPU tensors always take the reference path). Both are differentiable to any order.
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationSpec:
    func: Callable            # y = func(x, alpha)
    def_alpha: float          # default alpha (lrelu slope); 0 when unused
    def_gain: float           # default output gain (sqrt(2) keeps unit variance for relu-like)
    cuda_idx: int             # activation index understood by the CUDA kernel
    ref: str                  # what the CUDA backward needs: 'x' (input) or 'y' (output)
    has_2nd_grad: bool        # whether the 2nd derivative is nonzero somewhere


activation_funcs = {
    'linear':   ActivationSpec(lambda x, **_: x,                                  0.,  1.,          1, '',  False),
    'relu':     ActivationSpec(lambda x, **_: torch.relu(x),                      0.,  np.sqrt(2),  2, 'y', False),
    'lrelu':    ActivationSpec(lambda x, alpha, **_: torch.nn.functional.leaky_relu(x, alpha),
                               0.2, np.sqrt(2),  3, 'y', False),
    'tanh':     ActivationSpec(lambda x, **_: torch.tanh(x),                      0.,  1.,          4, 'y', True),
    'sigmoid':  ActivationSpec(lambda x, **_: torch.sigmoid(x),                   0.,  1.,          5, 'y', True),
    'elu':      ActivationSpec(lambda x, **_: torch.nn.functional.elu(x),         0.,  1.,          6, 'y', True),
    'selu':     ActivationSpec(lambda x, **_: torch.nn.functional.selu(x),        0.,  1.,          7, 'y', True),
    'softplus': ActivationSpec(lambda x, **_: torch.nn.functional.softplus(x),    0.,  1.,          8, 'y', True),
    'swish':    ActivationSpec(lambda x, **_: torch.sigmoid(x) * x,               0.,  np.sqrt(2),  9, 'x', True),
}

# ---------------------------------------------------------------------------------------------


def _resolve_args(act: str, alpha: float | None, gain: float | None, clamp: float | None):
    if act not in activation_funcs:
        raise ValueError(f"bias_act: unknown activation '{act}', expected one of {sorted(activation_funcs)}")
    spec = activation_funcs[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)  # negative means "no clamp"
    return spec, alpha, gain, clamp


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1, act: str = 'linear',
             alpha: float | None = None, gain: float | None = None, clamp: float | None = None,
             impl: str = 'cuda') -> torch.Tensor:
    """Add bias `b` along `dim`, apply activation `act`, scale by `gain`, clamp to [-clamp, clamp].

    Args:
        x:     input tensor of any shape.
        b:     bias of shape `[x.shape[dim]]`, or None.
        dim:   the dimension of `x` that `b` runs along.
        act:   activation name, a key of `activation_funcs`.
        alpha: activation parameter (lrelu slope); None takes the activation's default.
        gain:  output scale; None takes the activation's default gain.
        clamp: clamp limit applied after the gain; None disables clamping.
        impl:  'cuda' (our kernel for CUDA tensors, reference otherwise) or 'ref'.
    Returns:
        tensor of the same shape and dtype as `x`.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError('bias_act: x must be a tensor')
    if impl not in ('ref', 'cuda'):
        raise ValueError(f"bias_act: impl must be 'ref' or 'cuda', got '{impl}'")
    if impl == 'cuda' and x.device.type == 'cuda':
        from . import bias_act_cuda  # Imported lazily: building the kernel needs a CUDA toolkit.
        return bias_act_cuda.bias_act_cuda(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
    return bias_act_ref(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)


def bias_act_ref(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1, act: str = 'linear',
                 alpha: float | None = None, gain: float | None = None,
                 clamp: float | None = None) -> torch.Tensor:
    """The reference definition of `bias_act`, built from differentiable PyTorch ops."""
    spec, alpha, gain, clamp = _resolve_args(act, alpha, gain, clamp)
    if b is not None:
        if b.ndim != 1 or not (0 <= dim < x.ndim) or b.shape[0] != x.shape[dim]:
            raise ValueError(f'bias_act: bias of shape {list(b.shape)} does not match dim {dim} of '
                             f'input {list(x.shape)}')
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha=alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
