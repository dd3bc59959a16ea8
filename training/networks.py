"""StyleGAN2 generator and discriminator, state-dict compatible with stylegan2-ada-pytorch.

Class names, constructor arguments, attribute names, tensor names and tensor registration order
follow the official `training/networks.py`, so a network rebuilt from a pickle's `_init_kwargs`
takes its tensors one to one by state_dict name (spec: ../shared/specs/stylegan2-network-format.md,
sections 2-5; section numbers below refer to it).

Deliberate differences from the official code (behaviour on the official path is unchanged):
- fp16 blocks compute in float16 only when their tensors are on a CUDA device. On CPU they run in
  float32: the official code runs float16 on CPU too, which is slow and lossy (spec 5).
- A module cast with `.double()` computes in float64 wherever the official code hard-codes
  float32 (gradcheck and the float64 fixtures need that). FIR filters stay float32 for the ops.
- `MappingNetwork.forward` / `Generator.forward` also accept stylegan3's `update_emas`.

Every class is a `@persistence.persistent_class`: it pickles as its constructor arguments plus its
state_dict tensors (torch_utils/persistence.py), never as source code.
"""

import itertools

import numpy as np
import torch

from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import bias_act
from torch_utils.ops import conv2d_resample
from torch_utils.ops import upfirdn2d

# ---------------------------------------------------------------------------------------------


def _base_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype the official code hard-codes as float32: float64 if `module` was cast with .double()."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):  # Freeze-D: weights may be buffers
        return torch.float64 if tensor.dtype == torch.float64 else torch.float32
    return torch.float32


def _fir(resample_filter: torch.Tensor) -> torch.Tensor:
    """The FIR ops take float32 filters; `.double()`/`.half()` on a module also casts the buffer."""
    return resample_filter if resample_filter.dtype == torch.float32 else resample_filter.float()


def _block_dtype(use_fp16: bool, force_fp32: bool, device: torch.device, base_dtype: torch.dtype) -> torch.dtype:
    """Activation dtype of a synthesis/discriminator block (spec 5); float16 only on CUDA (see module doc)."""
    if use_fp16 and not force_fp32 and device.type == 'cuda':
        return torch.float16
    return base_dtype

# ---------------------------------------------------------------------------------------------


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale `x` to unit mean square along `dim` (spec 2.3): `x / sqrt(mean(x^2) + eps)`."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def modulated_conv2d(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None,
                     demodulate=True, flip_weight=True, fused_modconv=True) -> torch.Tensor:
    """Style-modulated (and optionally demodulated) convolution with FIR resampling (spec 2.6).

    Args:
        x:               activations `[N, I, H, W]` (float16 on the fp16 path).
        weight:          unmodulated weight `[O, I, kh, kw]`.
        styles:          per-sample input-channel scales `[N, I]`.
        noise:           added after demodulation, broadcastable to the output; None for none.
        up, down:        integer resampling factors.
        padding:         convolution padding (the layers pass `kernel_size // 2`).
        resample_filter: float32 FIR filter (needed when up/down > 1).
        demodulate:      divide each output channel by the norm of its modulated weight.
        flip_weight:     False for a true convolution (the layers pass `up == 1`).
        fused_modconv:   one grouped convolution with per-sample weights (True) or modulate the
                         activations and convolve with the shared weight (False); equal up to rounding.
    Returns:
        `[N, O, H', W']` in the dtype of `x`.
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    misc.assert_shape(weight, [out_channels, in_channels, kh, kw])
    misc.assert_shape(x, [batch_size, in_channels, None, None])
    misc.assert_shape(styles, [batch_size, in_channels])

    # float16 only: pre-scale weight and styles (cancelled by demodulation) so products cannot overflow.
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / np.sqrt(in_channels * kh * kw) /
                           weight.norm(float('inf'), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float('inf'), dim=1, keepdim=True)

    # w'[n, o, i] = weight[o, i] * styles[n, i]; d[n, o] = 1 / ||w'[n, o]|| (computed in styles' dtype).
    w = None
    dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)      # [N, O, I, kh, kw]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()               # [N, O]
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)

    if not fused_modconv:
        # Modulate activations, shared convolution, then demodulate the outputs.
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample.conv2d_resample(x=x, w=weight.to(x.dtype), f=resample_filter, up=up, down=down,
                                            padding=padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            # x * d + noise as one multiply-add (matches the reference rounding).
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1))
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    # Fused: the batch becomes the group axis of a single grouped convolution.
    x = x.reshape(1, -1, *x.shape[2:])                                         # [1, N*I, H, W]
    w = w.reshape(-1, in_channels, kh, kw)                                     # [N*O, I, kh, kw]
    x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=resample_filter, up=up, down=down,
                                        padding=padding, groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:])                                # [N, O, H', W']
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalized learning rate (spec 2.1, 3.1)."""

    def __init__(self,
        in_features,                # Input width.
        out_features,               # Output width.
        bias            = True,     # Learn an additive bias? False: `self.bias` is None.
        activation      = 'linear', # Activation name, a key of bias_act.activation_funcs.
        lr_multiplier   = 1,        # Learning-rate multiplier: weights stored at 1/lr_multiplier scale.
        bias_init       = 0,        # Initial bias value (the affines of the synthesis layers use 1).
    ):
        super().__init__()
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], np.float32(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        misc.assert_shape(x, [None, self.weight.shape[1]])
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == 'linear' and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())                  # x @ w^T + b in one call
        return bias_act.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self):
        return (f'in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, '
                f'activation={self.activation}')

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class Conv2dLayer(torch.nn.Module):
    """Convolution with equalized learning rate, FIR resampling, bias, activation and clamp (spec 3.2)."""

    def __init__(self,
        in_channels,                    # Input channels.
        out_channels,                   # Output channels.
        kernel_size,                    # Square kernel width.
        bias            = True,         # Learn an additive bias? False: `self.bias` is None.
        activation      = 'linear',     # Activation name, a key of bias_act.activation_funcs.
        up              = 1,            # Integer upsampling factor applied before the convolution.
        down            = 1,            # Integer downsampling factor applied after the convolution.
        resample_filter = (1, 3, 3, 1), # 1-D taps of the FIR resampling filter (stored 2-D, normalized).
        conv_clamp      = None,         # Clamp outputs to +-conv_clamp (times the call's gain); None: off.
        channels_last   = False,        # Store the weight in channels_last layout (fp16 speed-up).
        trainable       = True,         # False (Freeze-D): weight and bias become buffers.
    ):
        super().__init__()
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias) if bias is not None else None
        else:
            self.register_buffer('weight', weight)
            if bias is not None:
                self.register_buffer('bias', bias)
            else:
                self.bias = None

    def forward(self, x, gain=1):
        misc.assert_shape(x, [None, self.weight.shape[1], None, None])
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=_fir(self.resample_filter), up=self.up,
                                            down=self.down, padding=self.padding, flip_weight=(self.up == 1))
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=act_clamp)

    def extra_repr(self):
        out_channels, in_channels, k, _ = self.weight.shape
        return (f'in_channels={in_channels}, out_channels={out_channels}, kernel_size={k}, '
                f'activation={self.activation}, up={self.up}, down={self.down}, conv_clamp={self.conv_clamp}')

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    """z (and label c) -> w, broadcast to `num_ws` rows, with W-average tracking and truncation (spec 3.3)."""

    def __init__(self,
        z_dim,                      # Latent z width; 0 = no z input (the conditional D's label mapping).
        c_dim,                      # Label width; 0 = unconditional.
        w_dim,                      # Output w width.
        num_ws,                     # Number of w rows to broadcast to; None = return [N, w_dim].
        num_layers      = 8,        # Number of FC layers; 0 = output the normalized input (embed only).
        embed_features  = None,     # Label embedding width; None = w_dim (0 when c_dim == 0).
        layer_features  = None,     # Hidden FC width; None = w_dim.
        activation      = 'lrelu',  # Activation of the FC layers.
        lr_multiplier   = 0.01,     # Learning-rate multiplier of the FC layers.
        w_avg_beta      = 0.995,    # Decay of the running W average; None = no w_avg buffer (no truncation).
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        if num_layers == 0 and z_dim + embed_features != w_dim:
            raise ValueError(f'MappingNetwork: num_layers=0 outputs the input directly, so z_dim + embed_features '
                             f'({z_dim} + {embed_features}) must equal w_dim ({w_dim}); use num_layers >= 1')
        # Widths: input, (num_layers - 1) hidden, output.
        features_list = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features_list[idx], features_list[idx + 1], activation=activation,
                                        lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False, update_emas=None):
        """Map `z [N, z_dim]` and `c [N, c_dim]` to `ws [N, num_ws, w_dim]` (or `[N, w_dim]` if num_ws is None).

        W-average update (spec 3.3 step 3): stylegan2-ada rule by default, i.e. in training mode
        unless `skip_w_avg_update`. `update_emas` is stylegan3's explicit switch: when given it alone
        decides (True = update, in any mode); combining it with `skip_w_avg_update=True` is an error.
        """
        dtype = _base_dtype(self)
        x = None
        if self.z_dim > 0:
            misc.assert_shape(z, [None, self.z_dim])
            x = normalize_2nd_moment(z.to(dtype))
        if self.c_dim > 0:
            misc.assert_shape(c, [None, self.c_dim])
            y = normalize_2nd_moment(self.embed(c.to(dtype)))
            x = torch.cat([x, y], dim=1) if x is not None else y              # z part first
        if x is None:
            raise ValueError('MappingNetwork: z_dim and c_dim are both 0, there is no input to map')

        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)

        if self._should_update_w_avg(skip_w_avg_update, update_emas):
            # w_avg <- beta * w_avg + (1 - beta) * batch mean (un-truncated).
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])                    # [N, num_ws, w_dim]

        if truncation_psi != 1:
            if not hasattr(self, 'w_avg'):
                raise ValueError('MappingNetwork: truncation_psi != 1 needs the w_avg buffer, which this mapping '
                                 'lacks (built with num_ws=None or w_avg_beta=None); pass truncation_psi=1')
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)                        # w_avg + psi * (w - w_avg)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def _should_update_w_avg(self, skip_w_avg_update, update_emas) -> bool:
        if update_emas is not None:
            if skip_w_avg_update and update_emas:
                raise ValueError('MappingNetwork: update_emas=True contradicts skip_w_avg_update=True; pass only one')
            return bool(update_emas) and hasattr(self, 'w_avg')
        return self.training and not skip_w_avg_update and hasattr(self, 'w_avg')

    def extra_repr(self):
        return (f'z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, '
                f'num_layers={self.num_layers}, w_avg_beta={self.w_avg_beta}')

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    """Modulated 3x3 convolution + noise + bias + activation (spec 3.4)."""

    def __init__(self,
        in_channels,                    # Input channels.
        out_channels,                   # Output channels.
        w_dim,                          # Width of the w row that drives the styles.
        resolution,                     # Output resolution (pixels per side).
        kernel_size     = 3,            # Square kernel width.
        up              = 1,            # Integer upsampling factor (2 for conv0 of a block).
        use_noise       = True,         # Add per-pixel noise (noise_const buffer and noise_strength param)?
        activation      = 'lrelu',      # Activation name, a key of bias_act.activation_funcs.
        resample_filter = (1, 3, 3, 1), # 1-D taps of the FIR resampling filter.
        conv_clamp      = None,         # Clamp outputs to +-conv_clamp (times the call's gain); None: off.
        channels_last   = False,        # Store the weight in channels_last layout (fp16 speed-up).
    ):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size])
                                         .to(memory_format=memory_format))
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode='random', fused_modconv=True, gain=1):
        if noise_mode not in ('random', 'const', 'none'):
            raise ValueError(f"SynthesisLayer: noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        in_resolution = self.resolution // self.up
        misc.assert_shape(x, [None, self.weight.shape[1], in_resolution, in_resolution])
        styles = self.affine(w)                                               # [N, I]

        noise = None
        if self.use_noise and noise_mode == 'random':
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) \
                * self.noise_strength
        if self.use_noise and noise_mode == 'const':
            noise = self.noise_const * self.noise_strength                    # [res, res], broadcast

        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=_fir(self.resample_filter), flip_weight=(self.up == 1),
                             fused_modconv=fused_modconv)
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain,
                                 clamp=act_clamp)

    def extra_repr(self):
        out_channels, in_channels, k, _ = self.weight.shape
        return (f'in_channels={in_channels}, out_channels={out_channels}, kernel_size={k}, '
                f'resolution={self.resolution}, up={self.up}, use_noise={self.use_noise}, '
                f'activation={self.activation}, conv_clamp={self.conv_clamp}')

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class ToRGBLayer(torch.nn.Module):
    """Modulated (not demodulated) 1x1 convolution to image channels (spec 3.5)."""

    def __init__(self,
        in_channels,                # Input feature channels.
        out_channels,               # Image channels.
        w_dim,                      # Width of the w row that drives the styles.
        kernel_size     = 1,        # Square kernel width.
        conv_clamp      = None,     # Clamp outputs to +-conv_clamp; None: off.
        channels_last   = False,    # Store the weight in channels_last layout (fp16 speed-up).
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size])
                                         .to(memory_format=memory_format))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        # Equalized lr applied to the styles instead of the weight (no demodulation to undo it).
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self):
        out_channels, in_channels, k, _ = self.weight.shape
        return f'in_channels={in_channels}, out_channels={out_channels}, kernel_size={k}, conv_clamp={self.conv_clamp}'

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class SynthesisBlock(torch.nn.Module):
    """One resolution of the synthesis network: [const | conv0 (up 2)], conv1, [torgb], [skip] (spec 3.6)."""

    def __init__(self,
        in_channels,                        # Input channels; 0 = first block (starts from `const`).
        out_channels,                       # Output channels.
        w_dim,                              # Width of the w rows.
        resolution,                         # Output resolution of this block.
        img_channels,                       # Image channels of torgb.
        is_last,                            # Last block (always has torgb)?
        architecture        = 'skip',       # 'orig', 'skip' or 'resnet'.
        resample_filter     = (1, 3, 3, 1), # 1-D taps of the FIR resampling filter.
        conv_clamp          = None,         # Clamp layer outputs to +-conv_clamp; None: off.
        use_fp16            = False,        # Compute this block in float16 (on CUDA, see module doc)?
        fp16_channels_last  = False,        # Use channels_last layout when computing in float16?
        fused_modconv_default = None,       # fused_modconv when the caller passes None: None = the
                                            # stylegan2-ada rule; 'inference_only' (the stylegan3
                                            # repository's StyleGAN2) = fused unless training; True/False.
        **layer_kwargs,                     # Forwarded to both SynthesisLayers (e.g. use_noise, activation).
    ):
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"SynthesisBlock: architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        if fused_modconv_default not in (None, True, False, 'inference_only'):
            raise ValueError(f"SynthesisBlock: fused_modconv_default must be None, True, False or 'inference_only', "
                             f'got {fused_modconv_default!r}')
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        if in_channels != 0:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp,
                                        channels_last=self.channels_last, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == 'skip':
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == 'resnet':
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, **layer_kwargs):
        """x `[N, in, res/2, res/2]` (None for the first block), img `[N, img_channels, res/2, res/2]` or None,
        ws `[N, num_conv + num_torgb, w_dim]` -> (x `[N, out, res, res]`, img float `[N, C, res, res]` or None)."""
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        base_dtype = _base_dtype(self)
        dtype = _block_dtype(self.use_fp16, force_fp32, ws.device, base_dtype)
        use_channels_last = self.channels_last and dtype == torch.float16
        memory_format = torch.channels_last if use_channels_last else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == 'inference_only':
            fused_modconv = not self.training
        if fused_modconv is None:
            # Fused is faster in eval mode; with float16 only for batch 1 (spec 5).
            fused_modconv = (not self.training) and (dtype != torch.float16 or ws.shape[0] == 1)

        # Input.
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            misc.assert_shape(x, [None, self.in_channels, self.resolution // 2, self.resolution // 2])
            x = x.to(dtype=dtype, memory_format=memory_format)

        # Main layers.
        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        elif self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))                                # residual branches scaled by sqrt(1/2)
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=np.sqrt(0.5), **layer_kwargs)
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        # Image: upsample the running image, add this block's RGB (accumulated in base precision).
        if img is not None:
            misc.assert_shape(img, [None, self.img_channels, self.resolution // 2, self.resolution // 2])
            img = upfirdn2d.upsample2d(img, _fir(self.resample_filter))
        if self.is_last or self.architecture == 'skip':
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=base_dtype, memory_format=torch.contiguous_format)
            img = img + y if img is not None else y

        assert x.dtype == dtype, f'SynthesisBlock b{self.resolution}: activations are {x.dtype}, expected {dtype}'
        assert img is None or img.dtype == base_dtype, f'SynthesisBlock b{self.resolution}: image is {img.dtype}'
        return x, img

    def extra_repr(self):
        return (f'resolution={self.resolution}, architecture={self.architecture}, in_channels={self.in_channels}, '
                f'num_conv={self.num_conv}, num_torgb={self.num_torgb}, use_fp16={self.use_fp16}')

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    """ws `[N, num_ws, w_dim]` -> image `[N, img_channels, R, R]` through blocks b4 .. bR (spec 3.7)."""

    def __init__(self,
        w_dim,                      # Width of the w rows.
        img_resolution,             # Output resolution R, a power of two >= 4.
        img_channels,               # Output image channels.
        channel_base    = 32768,    # Channels at resolution r: min(channel_base // r, channel_max).
        channel_max     = 512,      # Upper bound of the channel count.
        num_fp16_res    = 0,        # Number of highest resolutions computed in float16 (never the 4x4 block).
        **block_kwargs,             # Forwarded to every SynthesisBlock (architecture, conv_clamp, ...).
    ):
        if not (img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0):
            raise ValueError(f'SynthesisNetwork: img_resolution must be a power of two >= 4, got {img_resolution}')
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res // 2] if res > 4 else 0
            is_last = (res == self.img_resolution)
            block = SynthesisBlock(in_channels, channels_dict[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=is_last, use_fp16=(res >= fp16_resolution),
                                   **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f'b{res}', block)

    def forward(self, ws, **block_kwargs):
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(_base_dtype(self))
        # A block's torgb shares its w row with the next block's conv0, hence the overlapping slices.
        block_ws = []
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            block_ws.append(ws.narrow(1, w_idx, block.num_conv + block.num_torgb))
            w_idx += block.num_conv

        x = img = None
        for res, cur_ws in zip(self.block_resolutions, block_ws):
            x, img = getattr(self, f'b{res}')(x, img, cur_ws, **block_kwargs)
        return img

    def extra_repr(self):
        return (f'w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, '
                f'img_channels={self.img_channels}')

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class Generator(torch.nn.Module):
    """z, c -> image: mapping then synthesis (spec 3.8)."""

    def __init__(self,
        z_dim,                      # Latent z width.
        c_dim,                      # Label width; 0 = unconditional.
        w_dim,                      # Intermediate latent w width.
        img_resolution,             # Output resolution.
        img_channels,               # Output image channels.
        mapping_kwargs      = None, # Extra MappingNetwork arguments; None = {}.
        synthesis_kwargs    = None, # Extra SynthesisNetwork arguments; None = {}.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        # synthesis is registered first: state_dict order is synthesis.* then mapping.* (spec 4).
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **(synthesis_kwargs or {}))
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **(mapping_kwargs or {}))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=None, **synthesis_kwargs):
        """z `[N, z_dim]`, c `[N, c_dim]` -> image `[N, img_channels, R, R]`.

        `synthesis_kwargs`: noise_mode ('random' | 'const' | 'none'), force_fp32, fused_modconv.
        `update_emas`: see MappingNetwork.forward (None = stylegan2-ada rule: update in training mode).
        """
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, **synthesis_kwargs)

    def extra_repr(self):
        return (f'z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, '
                f'img_resolution={self.img_resolution}, img_channels={self.img_channels}')

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class DiscriminatorBlock(torch.nn.Module):
    """One resolution of the discriminator: [fromrgb], conv0, conv1 (down 2), [skip] (spec 3.9)."""

    def __init__(self,
        in_channels,                        # Input channels; 0 = first block (reads the image).
        tmp_channels,                       # Channels of fromrgb/conv0 outputs.
        out_channels,                       # Output channels (at half resolution).
        resolution,                         # Input resolution of this block.
        img_channels,                       # Image channels.
        first_layer_idx,                    # Index of this block's first layer in D (for freeze_layers).
        architecture        = 'resnet',     # 'orig', 'skip' or 'resnet'.
        activation          = 'lrelu',      # Activation name, a key of bias_act.activation_funcs.
        resample_filter     = (1, 3, 3, 1), # 1-D taps of the FIR resampling filter.
        conv_clamp          = None,         # Clamp fromrgb/conv0/conv1 outputs to +-conv_clamp; None: off.
        use_fp16            = False,        # Compute this block in float16 (on CUDA, see module doc)?
        fp16_channels_last  = False,        # Use channels_last layout when computing in float16?
        freeze_layers       = 0,            # Layers of D with index < freeze_layers are frozen (buffers).
    ):
        if in_channels not in (0, tmp_channels):
            raise ValueError(f'DiscriminatorBlock: in_channels must be 0 or tmp_channels ({tmp_channels}), '
                             f'got {in_channels}')
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"DiscriminatorBlock: architecture must be 'orig', 'skip' or 'resnet', "
                             f'got {architecture!r}')
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))

        # Each layer created below takes the next layer index; Freeze-D freezes the lowest indices.
        self.num_layers = 0

        def next_trainable():
            trainable = (first_layer_idx + self.num_layers) >= freeze_layers
            self.num_layers += 1
            return trainable

        if in_channels == 0 or architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                                       trainable=next_trainable(), conv_clamp=conv_clamp,
                                       channels_last=self.channels_last)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation=activation,
                                 trainable=next_trainable(), conv_clamp=conv_clamp, channels_last=self.channels_last)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
                                 trainable=next_trainable(), resample_filter=resample_filter, conv_clamp=conv_clamp,
                                 channels_last=self.channels_last)
        if architecture == 'resnet':
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                    trainable=next_trainable(), resample_filter=resample_filter,
                                    channels_last=self.channels_last)

    def forward(self, x, img, force_fp32=False):
        """x `[N, in, res, res]` or None, img `[N, img_channels, res, res]` or None
        -> (x `[N, out, res/2, res/2]`, img downsampled for 'skip' else None)."""
        device = x.device if x is not None else img.device
        dtype = _block_dtype(self.use_fp16, force_fp32, device, _base_dtype(self))
        use_channels_last = self.channels_last and dtype == torch.float16
        memory_format = torch.channels_last if use_channels_last else torch.contiguous_format

        if x is not None:
            misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0 or self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = upfirdn2d.downsample2d(img, _fir(self.resample_filter)) if self.architecture == 'skip' else None

        if self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))                                # residual branches scaled by sqrt(1/2)
            x = self.conv0(x)
            x = self.conv1(x, gain=np.sqrt(0.5))
            x = y + x
        else:
            x = self.conv0(x)
            x = self.conv1(x)

        assert x.dtype == dtype, f'DiscriminatorBlock b{self.resolution}: activations are {x.dtype}, expected {dtype}'
        return x, img

    def extra_repr(self):
        return (f'resolution={self.resolution}, architecture={self.architecture}, in_channels={self.in_channels}, '
                f'first_layer_idx={self.first_layer_idx}, num_layers={self.num_layers}, use_fp16={self.use_fp16}')

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class MinibatchStdLayer(torch.nn.Module):
    """Append the standard deviation across groups of samples as extra feature maps (spec 3.10)."""

    def __init__(self,
        group_size,                 # Samples per group; None = the whole batch (capped at the batch size).
        num_channels    = 1,        # Number of appended feature maps (channel slices averaged separately).
    ):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        N, C, H, W = x.shape
        G = min(self.group_size, N) if self.group_size is not None else N
        F = self.num_channels
        if N % G != 0 or C % F != 0:
            raise ValueError(f'MinibatchStdLayer: batch {N} must be divisible by the group size {G} and channels '
                             f'{C} by num_channels {F}; change the batch size or mbstd_group_size')
        # Sample i goes to group member i // n of group i % n, n = N / G.
        y = x.reshape(G, -1, F, C // F, H, W)                                  # [G, n, F, c, H, W]
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)
        y = (y + 1e-8).sqrt()                                                  # std over the group
        y = y.mean(dim=[2, 3, 4])                                              # [n, F]
        y = y.reshape(-1, F, 1, 1)
        y = y.repeat(G, 1, H, W)                                               # [N, F, H, W]
        return torch.cat([x, y], dim=1)

    def extra_repr(self):
        return f'group_size={self.group_size}, num_channels={self.num_channels}'

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class DiscriminatorEpilogue(torch.nn.Module):
    """The 4x4 head: [fromrgb], minibatch std, conv, fc, out, optional label projection (spec 3.11)."""

    def __init__(self,
        in_channels,                # Input channels at 4x4.
        cmap_dim,                   # Label-embedding width for the projection; 0 = unconditional.
        resolution,                 # Input resolution (4).
        img_channels,               # Image channels (read by fromrgb in the 'skip' architecture).
        architecture        = 'resnet', # 'orig', 'skip' or 'resnet'.
        mbstd_group_size    = 4,    # Group size of the minibatch std layer; None = whole batch.
        mbstd_num_channels  = 1,    # Feature maps added by the minibatch std layer; 0 = no such layer.
        activation          = 'lrelu',  # Activation of conv and fc.
        conv_clamp          = None, # Clamp conv outputs to +-conv_clamp; None: off.
    ):
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"DiscriminatorEpilogue: architecture must be 'orig', 'skip' or 'resnet', "
                             f'got {architecture!r}')
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture

        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels) \
            if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * (resolution ** 2), in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap, force_fp32=False):
        """x `[N, in, 4, 4]`, img (for 'skip'), cmap `[N, cmap_dim]` or None -> logits `[N, 1]`, base precision."""
        del force_fp32  # The epilogue always runs in full precision.
        misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
        dtype = _base_dtype(self)
        x = x.to(dtype=dtype, memory_format=torch.contiguous_format)
        if self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            img = img.to(dtype=dtype, memory_format=torch.contiguous_format)
            x = x + self.fromrgb(img)

        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))                                             # NCHW flattening
        x = self.out(x)

        # Projection discriminator: <out(x), cmap> / sqrt(cmap_dim).
        if self.cmap_dim > 0:
            misc.assert_shape(cmap, [None, self.cmap_dim])
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))

        assert x.dtype == dtype, f'DiscriminatorEpilogue: logits are {x.dtype}, expected {dtype}'
        return x

    def extra_repr(self):
        return (f'in_channels={self.in_channels}, cmap_dim={self.cmap_dim}, resolution={self.resolution}, '
                f'architecture={self.architecture}')

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class Discriminator(torch.nn.Module):
    """image, c -> logits `[N, 1]`: blocks bR .. b8, optional label mapping, epilogue b4 (spec 3.12)."""

    def __init__(self,
        c_dim,                      # Label width; 0 = unconditional.
        img_resolution,             # Input resolution R, a power of two >= 8.
        img_channels,               # Input image channels.
        architecture    = 'resnet', # 'orig', 'skip' or 'resnet'.
        channel_base    = 32768,    # Channels at resolution r: min(channel_base // r, channel_max).
        channel_max     = 512,      # Upper bound of the channel count.
        num_fp16_res    = 0,        # Number of highest resolutions computed in float16.
        conv_clamp      = None,     # Clamp conv outputs to +-conv_clamp; None: off.
        cmap_dim        = None,     # Label-embedding width; None = channels at 4x4 (0 when c_dim == 0).
        block_kwargs    = None,     # Extra DiscriminatorBlock arguments; None = {}.
        mapping_kwargs  = None,     # Extra MappingNetwork arguments for the label mapping; None = {}.
        epilogue_kwargs = None,     # Extra DiscriminatorEpilogue arguments; None = {}.
    ):
        if not (img_resolution >= 8 and img_resolution & (img_resolution - 1) == 0):
            raise ValueError(f'Discriminator: img_resolution must be a power of two >= 8, got {img_resolution}')
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        if cmap_dim is None:
            cmap_dim = channels_dict[4]
        if c_dim == 0:
            cmap_dim = 0

        common_kwargs = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        cur_layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res] if res < img_resolution else 0
            block = DiscriminatorBlock(in_channels, channels_dict[res], channels_dict[res // 2], resolution=res,
                                       first_layer_idx=cur_layer_idx, use_fp16=(res >= fp16_resolution),
                                       **(block_kwargs or {}), **common_kwargs)
            setattr(self, f'b{res}', block)
            cur_layer_idx += block.num_layers
        if c_dim > 0:
            # Label mapping: no z, no broadcasting, no W average.
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **(mapping_kwargs or {}))
        self.b4 = DiscriminatorEpilogue(channels_dict[4], cmap_dim=cmap_dim, resolution=4,
                                        **(epilogue_kwargs or {}), **common_kwargs)

    def forward(self, img, c, **block_kwargs):
        """img `[N, img_channels, R, R]`, c `[N, c_dim]` -> logits `[N, 1]`. `block_kwargs`: force_fp32."""
        misc.assert_shape(img, [None, self.img_channels, self.img_resolution, self.img_resolution])
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f'b{res}')(x, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)

    def extra_repr(self):
        return (f'c_dim={self.c_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}, '
                f'cmap_dim={self.b4.cmap_dim}')
