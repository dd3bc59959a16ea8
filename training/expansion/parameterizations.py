"""Domain parameters theta applied to a frozen StyleGAN2 synthesis network.

Each parameterisation is bound to one `G.synthesis` and acts through forward hooks installed only
for the duration of a render (`with p.applied(theta): G.synthesis(ws)`), so `networks.py` stays
untouched and the generator's weights never change. theta is `[P]` (one domain for the batch) or
`[N, P]` (one domain per sample, as the encoder predicts them). The identity theta renders
exactly the source: multiplying by one and adding zero are exact in floating point.

    channel_scale  d, one multiplier per input channel of every modulated conv, toRGB included;
                   scaling the style s_i scales the weight's input channel i: w'_ijk = d_i w_ijk
                   (text Eq. 10, HyperDomainNet's domain vector).
    style_offset   delta_s, one offset per style channel of every modulated conv, toRGB
                   included: s' = s + delta_s (StyleSpace directions, text Eq. 12).
    rgb_affine     ours: a 3x3 colour matrix M and bias b on the toRGB path, img' = M img + b
                   (12 numbers). toRGB outputs are summed through linear upsampling, so applying
                   M to the summed image equals applying it to every toRGB output.
"""

import contextlib

import torch

import dnnlib
from torch_utils import misc
from training import networks

#----------------------------------------------------------------------------

class ParameterizationError(dnnlib.util.UserError, ValueError):
    """An unknown parameterisation name or a generator it cannot act on."""

class Parameterization:
    """Base class: theta's layout over hook targets of one synthesis network."""

    name = None         # Registry key.
    target_types = ()   # Module classes whose affine output (styles) is hooked.

    def __init__(self, G_synthesis: torch.nn.Module):
        self.synthesis = G_synthesis
        self.num_ws = G_synthesis.num_ws
        self.img_channels = G_synthesis.img_channels
        self.slices = {}                # Hooked module -> (start, stop) of its part of theta.
        for module in self._targets(G_synthesis):
            size = self._size(module)
            start = self.num_params
            self.slices[module] = (start, start + size)
        if not self.slices:
            raise ParameterizationError(f'parameterization {self.name!r}: the generator has no '
                f'{" / ".join(t.__name__ for t in self.target_types)} layers (only StyleGAN2 synthesis networks are supported)')

    def _targets(self, G_synthesis) -> list:
        return [m.affine for m in G_synthesis.modules() if isinstance(m, self.target_types)]

    def _size(self, module) -> int:
        return module.weight.shape[0]                              # The affine's output width: style channels.

    @property
    def num_params(self) -> int:
        """P, the length of theta."""
        return max((stop for _, stop in self.slices.values()), default=0)

    def identity(self, device='cpu') -> torch.Tensor:
        """theta_id `[P]`, which renders the source exactly."""
        raise NotImplementedError

    def _modify(self, output: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_theta(self, theta: torch.Tensor) -> None:
        if theta.ndim not in (1, 2) or theta.shape[-1] != self.num_params:
            raise ValueError(f'{self.name}: theta must be [P] or [N, P] with P = {self.num_params}, '
                             f'got {list(theta.shape)}')

    @contextlib.contextmanager
    def applied(self, theta: torch.Tensor):
        """Within the block, the synthesis network renders the domain theta `[P]` or `[N, P]`."""
        self.check_theta(theta)
        handles = []
        try:
            for module, (start, stop) in self.slices.items():
                part = theta[..., start:stop]
                handles.append(module.register_forward_hook(
                    lambda _module, _inputs, output, part=part: self._modify(output, part)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def render(self, ws: torch.Tensor, theta: torch.Tensor, noise_mode: str = 'const') -> torch.Tensor:
        """Images `[N, C, H, W]` of W+ latents `[N, num_ws, w_dim]` in domain theta (differentiable)."""
        misc.assert_shape(ws, [None, self.num_ws, None])
        if theta.ndim == 2:
            misc.assert_shape(theta, [ws.shape[0], self.num_params])
        with self.applied(theta):
            return self.synthesis(ws, noise_mode=noise_mode)

    def __repr__(self):
        return f'{type(self).__name__}(num_params={self.num_params}, layers={len(self.slices)})'

#----------------------------------------------------------------------------

class ChannelScale(Parameterization):
    """d: styles of every modulated conv (3x3 and toRGB) multiplied channel-wise (text Eq. 10); identity = ones."""

    name = 'channel_scale'
    target_types = (networks.SynthesisLayer, networks.ToRGBLayer)

    def identity(self, device='cpu') -> torch.Tensor:
        return torch.ones([self.num_params], device=device)

    def _modify(self, styles, part):
        return styles * part.to(styles.dtype)                      # s'_i = d_i s_i  <=>  w'_ijk = d_i w_ijk

class StyleOffset(Parameterization):
    """delta_s: an offset per style channel, convs and toRGB (text Eq. 12); identity = zeros."""

    name = 'style_offset'
    target_types = (networks.SynthesisLayer, networks.ToRGBLayer)

    def identity(self, device='cpu') -> torch.Tensor:
        return torch.zeros([self.num_params], device=device)

    def _modify(self, styles, part):
        return styles + part.to(styles.dtype)                      # s' = s + delta_s

class RgbAffine(Parameterization):
    """(M, b): img' = M img + b on the toRGB path; theta = [M row-major (C*C), b (C)]."""

    name = 'rgb_affine'

    def _targets(self, G_synthesis) -> list:
        return [G_synthesis]

    def _size(self, module) -> int:
        return self.img_channels * self.img_channels + self.img_channels

    def identity(self, device='cpu') -> torch.Tensor:
        C = self.img_channels
        return torch.cat([torch.eye(C, device=device).flatten(), torch.zeros([C], device=device)])

    def apply_to_image(self, img: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """M img + b for images `[N, C, H, W]` and theta `[P]` or `[N, P]`: the domain's render of
        latents whose source render is `img`, without running the synthesis network again."""
        self.check_theta(theta)
        return apply_rgb_affine(img, theta)

    def _modify(self, img, part):
        return self.apply_to_image(img, part)

def apply_rgb_affine(img: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """img' = M img + b for images `[N, C, H, W]`, theta = [M row-major (C*C), b (C)], `[P]` or `[N, P]`."""
    C = img.shape[1]
    misc.assert_shape(theta, [None, C * C + C] if theta.ndim == 2 else [C * C + C])
    theta = theta.to(img.dtype)
    M, b = theta[..., :C * C].unflatten(-1, [C, C]), theta[..., C * C:]
    if theta.ndim == 1:
        return torch.einsum('ij,njhw->nihw', M, img) + b.reshape(1, -1, 1, 1)
    return torch.einsum('nij,njhw->nihw', M, img) + b.reshape(b.shape[0], -1, 1, 1)

#----------------------------------------------------------------------------

PARAMETERIZATIONS = {cls.name: cls for cls in (ChannelScale, StyleOffset, RgbAffine)}

def get_parameterization(name: str, G_synthesis: torch.nn.Module, key: str = 'parameterization') -> Parameterization:
    """The parameterisation `name` bound to `G_synthesis`; `key` names the flag or config key in errors."""
    if name not in PARAMETERIZATIONS:
        raise ParameterizationError(f'{key}: unknown parameterization {name!r}; choose one of {", ".join(PARAMETERIZATIONS)}')
    return PARAMETERIZATIONS[name](G_synthesis)

#----------------------------------------------------------------------------
