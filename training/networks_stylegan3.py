"""StyleGAN3 (alias-free) generator, state-dict compatible with NVlabs/stylegan3.

Class names, constructor arguments and tensor names follow the official
`training/networks_stylegan3.py`, so a network rebuilt from a pickle's `_init_kwargs` takes its
tensors one to one by state_dict name (facts: ../shared/specs/stylegan3-network-format.md, cited
below as "spec <section>"; paper: Karras et al. 2021, "Alias-Free Generative Adversarial Networks").
The discriminator of StyleGAN3 pickles is the StyleGAN2 one (`training.networks.Discriminator`).

Deliberate differences from the official code (outputs on the official path are unchanged):
- The W average follows our StyleGAN2 rule (`training/networks.py`): `update_emas=None` (the
  default) updates it in training mode unless `skip_w_avg_update`; an explicit `update_emas`
  alone decides, as in the official code. Our StyleGAN2 loss and the expansion code drive both
  families through that one rule. The magnitude EMAs of the synthesis layers keep the official
  rule: they move only when `update_emas=True` is passed (so expansion, which renders edited
  domains in training mode, never shifts the input normalisation of the base).
- A module cast with `.double()` computes in float64 where the official code hard-codes float32.
- fp16 layers compute in float16 only on CUDA (the official code does the same for this network).
- No CUDA kernel of ours for the filtered leaky ReLU: every device runs its reference path
  (torch_utils/ops/filtered_lrelu.py).

Every class is a `@persistence.persistent_class`: it pickles as its constructor arguments plus its
state_dict tensors, never as source code.
"""

import itertools

import numpy as np
import scipy.signal
import scipy.special
import torch

from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import bias_act
from torch_utils.ops import filtered_lrelu

# ---------------------------------------------------------------------------------------------


def _base_dtype(module: torch.nn.Module) -> torch.dtype:
    """float32, or float64 if `module` was cast with .double() (the official code hard-codes float32)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return torch.float64 if tensor.dtype == torch.float64 else torch.float32
    return torch.float32


def _fir(f: torch.Tensor | None) -> torch.Tensor | None:
    """The FIR ops take float32 filters; `.double()` on a module also casts the filter buffers."""
    return f if f is None or f.dtype == torch.float32 else f.float()


def _should_update_emas(module: torch.nn.Module, skip_w_avg_update: bool, update_emas: bool | None) -> bool:
    """Whether the mapping updates its W average (module docstring)."""
    if update_emas is not None:
        if skip_w_avg_update and update_emas:
            raise ValueError('update_emas=True contradicts skip_w_avg_update=True; pass only one')
        return bool(update_emas)
    return module.training and not skip_w_avg_update


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """`x / sqrt(mean(x^2) + eps)` along `dim` (spec MappingNetwork)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     padding: int = 0, input_gain: torch.Tensor | None = None) -> torch.Tensor:
    """StyleGAN3's modulated convolution (spec SynthesisLayer step 3), one grouped conv for the batch.

    Args:
        x:          activations `[N, I, H, W]`.
        weight:     unmodulated weight `[O, I, k, k]`.
        styles:     per-sample input-channel scales `[N, I]`.
        demodulate: pre-normalise weight and styles, then divide each output channel by its norm.
        padding:    zero padding of the convolution (the layers pass k - 1, so the image grows).
        input_gain: scalar multiplier of the input (1 / sqrt(magnitude EMA)); None = 1.
    Returns:
        `[N, O, H + 2 padding - k + 1, W + ...]` in the dtype of `x`.
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    misc.assert_shape(x, [batch_size, in_channels, None, None])
    misc.assert_shape(styles, [batch_size, in_channels])

    if demodulate:
        # Scale-free pre-normalisation: per output channel for W, one scalar for the whole style batch.
        weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, in_channels, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    if input_gain is not None:
        w = w * input_gain

    x = x.reshape(1, batch_size * in_channels, *x.shape[2:])                 # [1, N*I, H, W]
    w = w.reshape(batch_size * out_channels, in_channels, kh, kw)            # [N*O, I, k, k]
    x = torch.nn.functional.conv2d(x, w.to(x.dtype), padding=padding, groups=batch_size)
    return x.reshape(batch_size, out_channels, *x.shape[2:])


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> torch.Tensor | None:
    """Kaiser-windowed low-pass FIR filter (spec SynthesisLayer, "Filters"; paper Appendix C).

    Args:
        numtaps: number of taps; 1 means no filter (returns None).
        cutoff:  cutoff frequency f_c.
        width:   transition band width (2 f_h).
        fs:      sampling rate of the signal the filter runs on.
        radial:  a 2-D jinc filter `[taps, taps]` (rotation equivariant) instead of a 1-D one.
    Returns:
        float32 filter `[taps]` or `[taps, taps]`, or None.
    """
    if numtaps == 1:
        return None
    if not radial:
        taps = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(taps, dtype=torch.float32)
    coords = (np.arange(numtaps) - (numtaps - 1) / 2) / fs                 # even taps: r is never 0
    r = np.hypot(*np.meshgrid(coords, coords))
    jinc = scipy.special.j1(2 * np.pi * cutoff * r) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    taps = jinc * np.outer(window, window)
    return torch.as_tensor(taps / np.sum(taps), dtype=torch.float32)

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalized learning rate (spec FullyConnectedLayer)."""

    def __init__(self,
        in_features,                # Input width.
        out_features,               # Output width.
        activation      = 'linear', # Activation name, a key of bias_act.activation_funcs.
        bias            = True,     # Learn an additive bias? False: `self.bias` is None.
        lr_multiplier   = 1,        # Learning-rate multiplier: tensors stored at 1/lr_multiplier scale.
        weight_init     = 1,        # Initial weight std (0 for the Fourier-feature affine).
        bias_init       = 0,        # Initial bias: a scalar or one value per output ([1, 0, 0, 0]).
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        bias_init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
        self.bias = torch.nn.Parameter(torch.from_numpy(bias_init / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        misc.assert_shape(x, [None, self.in_features])
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == 'linear' and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())                  # x W^T + b
        return bias_act.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self):
        return f'in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}'

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    """z (and label c) -> w, broadcast to `num_ws` rows, with W-average tracking and truncation."""

    def __init__(self,
        z_dim,                      # Latent z width.
        c_dim,                      # Label width; 0 = unconditional.
        w_dim,                      # Output w width (also the label embedding width).
        num_ws,                     # Number of w rows to broadcast to.
        num_layers      = 2,        # Number of FC layers.
        lr_multiplier   = 0.01,     # Learning-rate multiplier of the FC layers.
        w_avg_beta      = 0.998,    # Decay of the running W average.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, w_dim)
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            setattr(self, f'fc{idx}', FullyConnectedLayer(features[idx], features[idx + 1], activation='lrelu',
                                                         lr_multiplier=lr_multiplier))
        self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False, update_emas=None):
        """z `[N, z_dim]`, c `[N, c_dim]` -> ws `[N, num_ws, w_dim]` (EMA rule: module docstring)."""
        dtype = _base_dtype(self)
        misc.assert_shape(z, [None, self.z_dim])
        x = normalize_2nd_moment(z.to(dtype))
        if self.c_dim > 0:
            misc.assert_shape(c, [None, self.c_dim])
            y = normalize_2nd_moment(self.embed(c.to(dtype)))
            x = torch.cat([x, y], dim=1)                                      # z part first
        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)

        if _should_update_emas(self, skip_w_avg_update, update_emas):
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])                        # [N, num_ws, w_dim]
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x = x.clone()
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], truncation_psi)    # w_avg + psi (w - w_avg)
        return x

    def extra_repr(self):
        return (f'z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, '
                f'num_layers={self.num_layers}, w_avg_beta={self.w_avg_beta}')

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class SynthesisInput(torch.nn.Module):
    """Fourier features, rotated and translated per sample by an affine of w (paper Sec. 3.2, spec SynthesisInput)."""

    def __init__(self,
        w_dim,                      # Width of the w row that drives the transform.
        channels,                   # Number of Fourier features C (output channels).
        size,                       # Output size in pixels: an int or [width, height].
        sampling_rate,              # Samples per unit length of the feature grid.
        bandwidth,                  # Largest frequency magnitude of the features.
    ):
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = tuple(int(s) for s in np.broadcast_to(np.asarray(size), [2]))  # (width, height)
        self.sampling_rate = float(sampling_rate)
        self.bandwidth = float(bandwidth)

        # Random directions with magnitudes concentrated well below `bandwidth`.
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        phases = torch.rand([channels]) - 0.5

        self.weight = torch.nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer('transform', torch.eye(3, 3))  # Inverse image transform set by the user.
        self.register_buffer('freqs', freqs)                 # [C, 2] as (fx, fy) rows.
        self.register_buffer('phases', phases)               # [C], in cycles.

    def forward(self, w):
        """w `[N, w_dim]` -> features `[N, C, height, width]`."""
        misc.assert_shape(w, [None, self.w_dim])
        batch_size = w.shape[0]
        dtype = _base_dtype(self)

        # Per-sample rotation (t0, t1 normalised to a unit vector) and translation (t2, t3).
        t = self.affine(w.to(dtype))                                          # [N, 4]
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        m_r = torch.eye(3, dtype=dtype, device=w.device).repeat([batch_size, 1, 1])
        m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        m_t = torch.eye(3, dtype=dtype, device=w.device).repeat([batch_size, 1, 1])
        m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = m_r @ m_t @ self.transform.to(dtype)                     # [N, 3, 3]

        # Transform the features: x -> T x turns sin(2 pi (f.x + p)) into sin(2 pi (f T_lin x + f T_off + p)).
        phases = self.phases.to(dtype) + (self.freqs.to(dtype) @ transforms[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = self.freqs.to(dtype) @ transforms[:, :2, :2]                  # [N, C, 2]
        # Fade out features that would alias at this sampling rate (paper Sec. 3.2).
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) /
                      (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)  # [N, C]

        # Pixel centres (k + 0.5 - size/2) / sampling_rate, x along the width, y along the height.
        width, height = self.size
        gx = (torch.arange(width, dtype=dtype, device=w.device) + 0.5 - width / 2) / self.sampling_rate
        gy = (torch.arange(height, dtype=dtype, device=w.device) + 0.5 - height / 2) / self.sampling_rate
        arg = (gx.reshape(1, 1, width, 1) * freqs[:, None, None, :, 0] +
               gy.reshape(1, height, 1, 1) * freqs[:, None, None, :, 1] + phases[:, None, None, :])  # [N, H, W, C]
        x = torch.sin(arg * (2 * np.pi)) * amplitudes[:, None, None, :]

        x = x @ (self.weight.to(dtype) / np.sqrt(self.channels)).t()          # mix channels
        x = x.permute(0, 3, 1, 2)                                             # [N, C, H, W]
        misc.assert_shape(x, [batch_size, self.channels, height, width])
        return x

    def extra_repr(self):
        return (f'w_dim={self.w_dim}, channels={self.channels}, size={list(self.size)}, '
                f'sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}')

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    """Modulated conv + alias-free filtered leaky ReLU (paper Sec. 3.2 and Appendix F, spec SynthesisLayer)."""

    def __init__(self,
        w_dim,                          # Width of the w row that drives the styles.
        is_torgb,                       # The last layer: 1x1 conv to image channels, no demodulation, linear.
        is_critically_sampled,          # Cutoff at Nyquist: no radial down filter for this layer.
        use_fp16,                       # Compute in float16 (on CUDA only)?
        in_channels,                    # Input channels.
        out_channels,                   # Output channels.
        in_size,                        # Input size in pixels: int or [width, height].
        out_size,                       # Output size in pixels: int or [width, height].
        in_sampling_rate,               # Sampling rate of the input (samples per unit length).
        out_sampling_rate,              # Sampling rate of the output.
        in_cutoff,                      # Cutoff frequency f_c of the input signal.
        out_cutoff,                     # Cutoff frequency of the output signal.
        in_half_width,                  # Transition half width f_h of the input.
        out_half_width,                 # Transition half width of the output.
        conv_kernel         = 3,        # Convolution kernel width (forced to 1 for torgb).
        filter_size         = 6,        # Low-pass filter taps per unit of resampling factor.
        lrelu_upsampling    = 2,        # Oversampling of the nonlinearity (1 for torgb).
        use_radial_filters  = False,    # 2-D jinc down filters (config R) where not critically sampled?
        conv_clamp          = 256,      # Clamp the activations to +-conv_clamp; None = off.
        magnitude_ema_beta  = 0.999,    # Decay of the input-magnitude EMA.
    ):
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = tuple(int(s) for s in np.broadcast_to(np.asarray(in_size), [2]))
        self.out_size = tuple(int(s) for s in np.broadcast_to(np.asarray(out_size), [2]))
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer('magnitude_ema', torch.ones([]))

        # Resampling factors and filters; the nonlinearity runs at tmp_sampling_rate.
        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        assert in_sampling_rate * self.up_factor == self.tmp_sampling_rate, 'up factor must be an integer'
        assert out_sampling_rate * self.down_factor == self.tmp_sampling_rate, 'down factor must be an integer'
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer('up_filter', design_lowpass_filter(
            self.up_taps, in_cutoff, 2 * in_half_width, self.tmp_sampling_rate))
        self.register_buffer('down_filter', design_lowpass_filter(
            self.down_taps, out_cutoff, 2 * out_half_width, self.tmp_sampling_rate, radial=self.down_radial))

        # Padding that turns the (in_size + k - 1) convolution output into exactly out_size pixels.
        pad_total = (np.asarray(self.out_size) - 1) * self.down_factor + 1                  # [x, y]
        pad_total -= (np.asarray(self.in_size) + self.conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def forward(self, x, w, noise_mode='random', force_fp32=False, update_emas=False):
        """x `[N, in_channels, in_h, in_w]`, w `[N, w_dim]` -> `[N, out_channels, out_h, out_w]`.

        `noise_mode` is accepted for interface compatibility and ignored: StyleGAN3 has no noise.
        `update_emas=True` moves `magnitude_ema` towards this batch's input mean square.
        """
        if noise_mode not in ('random', 'const', 'none'):
            raise ValueError(f"SynthesisLayer: noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        misc.assert_shape(x, [None, self.in_channels, self.in_size[1], self.in_size[0]])
        base_dtype = _base_dtype(self)

        # Input normalisation by the running mean square of the input (paper Sec. 3.2, "magnitude EMA").
        if update_emas:
            magnitude = x.detach().to(base_dtype).square().mean()
            self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.to(base_dtype).rsqrt()

        styles = self.affine(w.to(base_dtype))                                # [N, in_channels]
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * self.conv_kernel ** 2))  # equalized lr on styles

        use_fp16 = self.use_fp16 and not force_fp32 and x.device.type == 'cuda'
        dtype = torch.float16 if use_fp16 else base_dtype
        x = modulated_conv2d(x.to(dtype), self.weight.to(base_dtype), styles, demodulate=not self.is_torgb,
                             padding=self.conv_kernel - 1, input_gain=input_gain)

        gain = 1 if self.is_torgb else np.sqrt(2)
        slope = 1 if self.is_torgb else 0.2
        x = filtered_lrelu.filtered_lrelu(x, fu=_fir(self.up_filter), fd=_fir(self.down_filter),
                                          b=self.bias.to(x.dtype), up=self.up_factor, down=self.down_factor,
                                          padding=self.padding, gain=gain, slope=slope, clamp=self.conv_clamp)
        misc.assert_shape(x, [None, self.out_channels, self.out_size[1], self.out_size[0]])
        assert x.dtype == dtype, f'SynthesisLayer: output is {x.dtype}, expected {dtype}'
        return x

    def extra_repr(self):
        return (f'w_dim={self.w_dim}, is_torgb={self.is_torgb}, is_critically_sampled={self.is_critically_sampled}, '
                f'use_fp16={self.use_fp16}, in_channels={self.in_channels}, out_channels={self.out_channels}, '
                f'in_size={list(self.in_size)}, out_size={list(self.out_size)}, '
                f'in_sampling_rate={self.in_sampling_rate:g}, out_sampling_rate={self.out_sampling_rate:g}, '
                f'in_cutoff={self.in_cutoff:g}, out_cutoff={self.out_cutoff:g}, up={self.up_factor}, '
                f'down={self.down_factor}, conv_kernel={self.conv_kernel}, radial={self.down_radial}')

# ---------------------------------------------------------------------------------------------


def layer_schedule(img_resolution: int, img_channels: int, channel_base: int, channel_max: int, num_layers: int,
                   num_critical: int, first_cutoff: float, first_stopband: float, last_stopband_rel: float,
                   margin_size: int) -> dict[str, np.ndarray]:
    """Per-layer cutoffs, stopbands, sampling rates, half widths, sizes and channels, i = 0..num_layers
    (paper Sec. 3.2 / Fig. 4b, spec "Layer schedule"). Returns float64 / int64 arrays of length num_layers+1."""
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (img_resolution / 2 / first_cutoff) ** exponents                          # f_c
    stopbands = first_stopband * (img_resolution / 2 * last_stopband_rel / first_stopband) ** exponents  # f_t
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))            # s
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs                                # f_h
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return dict(cutoffs=cutoffs, stopbands=stopbands, sampling_rates=sampling_rates, half_widths=half_widths,
                sizes=sizes.astype(np.int64), channels=channels.astype(np.int64))


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    """ws `[N, num_ws, w_dim]` -> image: Fourier input, num_layers layers and ToRGB (spec SynthesisNetwork)."""

    def __init__(self,
        w_dim,                          # Width of the w rows.
        img_resolution,                 # Output resolution R.
        img_channels,                   # Output image channels.
        channel_base        = 32768,    # Channels of layer i: min(channel_base / 2 / cutoff_i, channel_max).
        channel_max         = 512,      # Upper bound of the channel count.
        num_layers          = 14,       # Synthesis layers, not counting the ToRGB layer.
        num_critical        = 2,        # Critically sampled layers at the end.
        first_cutoff        = 2,        # Cutoff of the first layer (f_c,0).
        first_stopband      = 2 ** 2.1, # Stopband of the first layer (f_t,0).
        last_stopband_rel   = 2 ** 0.3, # Stopband of the last layer, relative to R / 2.
        margin_size         = 10,       # Extra pixels on each side of the internal feature maps.
        output_scale        = 0.25,     # Multiplier of the final image.
        num_fp16_res        = 4,        # Layers whose sampling rate exceeds R / 2**num_fp16_res use float16.
        **layer_kwargs,                 # Forwarded to every SynthesisLayer (conv_kernel, use_radial_filters, ...).
    ):
        super().__init__()
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res
        sched = layer_schedule(img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
                               first_cutoff, first_stopband, last_stopband_rel, margin_size)

        self.input = SynthesisInput(w_dim=w_dim, channels=int(sched['channels'][0]), size=int(sched['sizes'][0]),
                                    sampling_rate=sched['sampling_rates'][0], bandwidth=sched['cutoffs'][0])
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim, is_torgb=(idx == num_layers), is_critically_sampled=(idx >= num_layers - num_critical),
                use_fp16=bool(sched['sampling_rates'][idx] * (2 ** num_fp16_res) > img_resolution),
                in_channels=int(sched['channels'][prev]), out_channels=int(sched['channels'][idx]),
                in_size=int(sched['sizes'][prev]), out_size=int(sched['sizes'][idx]),
                in_sampling_rate=int(sched['sampling_rates'][prev]), out_sampling_rate=int(sched['sampling_rates'][idx]),
                in_cutoff=float(sched['cutoffs'][prev]), out_cutoff=float(sched['cutoffs'][idx]),
                in_half_width=float(sched['half_widths'][prev]), out_half_width=float(sched['half_widths'][idx]),
                **layer_kwargs)
            name = f'L{idx}_{layer.out_size[0]}_{layer.out_channels}'
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws, **layer_kwargs):
        """ws `[N, num_ws, w_dim]` -> image `[N, img_channels, R, R]`; row 0 drives the input, row i+1 layer i.

        `layer_kwargs`: noise_mode (ignored), force_fp32, update_emas (magnitude EMAs).
        """
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        dtype = _base_dtype(self)
        ws = ws.to(dtype).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, **layer_kwargs)
        if self.output_scale != 1:
            x = x * self.output_scale
        misc.assert_shape(x, [None, self.img_channels, self.img_resolution, self.img_resolution])
        return x.to(dtype)

    def extra_repr(self):
        return (f'w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, '
                f'img_channels={self.img_channels}, num_layers={self.num_layers}, num_critical={self.num_critical}, '
                f'margin_size={self.margin_size}, num_fp16_res={self.num_fp16_res}')

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class Generator(torch.nn.Module):
    """z, c -> image: mapping then alias-free synthesis."""

    def __init__(self,
        z_dim,                      # Latent z width.
        c_dim,                      # Label width; 0 = unconditional.
        w_dim,                      # Intermediate latent w width.
        img_resolution,             # Output resolution.
        img_channels,               # Output image channels.
        mapping_kwargs      = None, # Extra MappingNetwork arguments; None = {}.
        **synthesis_kwargs,         # SynthesisNetwork arguments, flat as the official Generator takes them.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        # synthesis is registered first: state_dict order is synthesis.* then mapping.*.
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **(mapping_kwargs or {}))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=None, **synthesis_kwargs):
        """z `[N, z_dim]`, c `[N, c_dim]` -> image `[N, img_channels, R, R]`.

        `synthesis_kwargs`: noise_mode (ignored), force_fp32. `update_emas`: None = the W average
        follows the training-mode rule and the magnitude EMAs stay; True / False = both move / stay
        (module docstring).
        """
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=bool(update_emas), **synthesis_kwargs)

    def extra_repr(self):
        return (f'z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, '
                f'img_resolution={self.img_resolution}, img_channels={self.img_channels}')

# ---------------------------------------------------------------------------------------------


def is_stylegan3_synthesis(synthesis: torch.nn.Module) -> bool:
    """True for a StyleGAN3 synthesis network (tools dispatch on the family with this)."""
    return isinstance(synthesis, SynthesisNetwork)


def set_input_transform(G: torch.nn.Module, translate=(0.0, 0.0), rotate_deg: float = 0.0) -> None:
    """Set the Fourier input's transform of a StyleGAN3 generator so the image appears translated by
    `translate` (in units of the image, centre at 0) and rotated by `rotate_deg` degrees.

    The buffer holds the inverse of the image transform [[cos, sin, tx], [-sin, cos, ty], [0, 0, 1]]
    (paper Sec. 3.2; what the official tool writes).
    """
    if not is_stylegan3_synthesis(getattr(G, 'synthesis', None)):
        raise ValueError('set_input_transform: the generator is not a StyleGAN3 generator (no Fourier input)')
    angle = rotate_deg / 360.0 * 2 * np.pi
    s, c = np.sin(angle), np.cos(angle)
    matrix = np.array([[c, s, translate[0]], [-s, c, translate[1]], [0, 0, 1]], dtype=np.float64)
    transform = G.synthesis.input.transform
    transform.copy_(torch.from_numpy(np.linalg.inv(matrix)).to(transform.dtype))
