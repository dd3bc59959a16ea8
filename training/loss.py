"""Training objectives, written as phases the training loop runs in turn.

`Loss` is the interface the loop drives (any loss class named by `loss_kwargs.class_name`
implements it, e.g. `training.expansion.loss.DomainExpansionLoss`); `StyleGAN2Loss` is the
StyleGAN2-ADA objective (spec section 6): non-saturating logistic loss, R1 on real images with
lazy regularisation, path-length regularisation and style mixing; with the StyleGAN3 options
(`update_emas_in_D_fakes`, `blur_init_sigma`, `blur_fade_kimg`) it is the official StyleGAN3 loss. A method's loss composes
`StyleGAN2Loss` through its public interface: it runs the GAN phases with
`accumulate_gradients` and may hand in the function that makes the adversarial fakes.

Contract with the loop (training/training_loop.py):
- The loop builds the loss as `LossClass(device=, G_mapping=, G_synthesis=, D=, augment_pipe=,
  batch_gpu=, **other loss_kwargs, **LossClass.resolve_inputs(loss_kwargs, G=, G_ema=, snapshot=))`:
  `resolve_inputs` derives, once, what the loss needs from the networks the run starts from
  (domain expansion: the SeFA basis of G_ema and the frozen source synthesis).
- `get_phases(G_reg_interval, D_reg_interval)` lists the phases; each names the network it
  trains ('G' or 'D') and runs every `interval` steps. The loop keeps ONE Adam optimizer per
  network over `trainable_params(name, module)`; when that network's reg interval `k` is set, it
  uses lr * k/(k+1) and beta ** (k/(k+1)) (lazy regularisation, StyleGAN2 paper appendix B).
- Per phase the loop zeroes the gradients, calls `accumulate_gradients(...)` once per
  accumulation round with `gain = interval / rounds` (so the gradient is the mean over the global
  batch times the interval), averages gradients over ranks, checks them and steps.
- `state_dict()` / `load_state_dict()` carry per-rank loss state (pl_mean) for exact resume;
  `snapshot_extras()` adds keys to every snapshot.
- Report every loss term with `training_stats.report('Loss/...', values)`. The D phase on real
  images must report `Loss/signs/real` (sign of D's real logits): ADA reads it.
"""

import dataclasses

import numpy as np
import torch

from torch_utils import misc
from torch_utils.ops import upfirdn2d
from torch_utils import training_stats

# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Phase:
    """One step of the training schedule."""
    name: str      # Passed to accumulate_gradients, e.g. 'Gmain', 'Dreg'.
    module: str    # Network whose optimizer steps: 'G' or 'D'.
    interval: int  # Run on steps where batch_idx % interval == 0.

    def __post_init__(self):
        if self.module not in ('G', 'D'):
            raise ValueError(f"Phase '{self.name}': module must be 'G' or 'D', got {self.module!r}")
        if int(self.interval) < 1:
            raise ValueError(f"Phase '{self.name}': interval must be >= 1, got {self.interval}")


class Loss:
    """Interface between a training objective and the training loop (see the module docstring)."""

    @classmethod
    def resolve_inputs(cls, loss_kwargs: dict, G: torch.nn.Module, G_ema: torch.nn.Module,
                       snapshot: dict | None) -> dict:
        """Constructor arguments derived once by the loop set-up, after the starting weights are
        loaded, from `G`, `G_ema` and the loaded snapshot dict (None when training from scratch);
        every rank must get the same values. Default: none."""
        return {}

    def get_phases(self, G_reg_interval: int | None, D_reg_interval: int | None) -> list[Phase]:
        """The phases of one training step, in execution order."""
        raise NotImplementedError

    def trainable_params(self, name: str, module: torch.nn.Module) -> list[torch.nn.Parameter]:
        """Parameters of network `name` ('G' or 'D') that its optimizer updates (default: all)."""
        return list(module.parameters())

    def accumulate_gradients(self, phase: str, real_img: torch.Tensor | None, real_c: torch.Tensor | None,
                             gen_z: torch.Tensor, gen_c: torch.Tensor, gain: float, cur_nimg: int) -> None:
        """Backpropagate the loss terms of `phase` for one sub-batch, scaled by `gain`.

        real_img `[N, C, H, W]` float in [-1, 1] (None when training without data), real_c
        `[N, c_dim]`, gen_z `[N, z_dim]`, gen_c `[N, c_dim]`; cur_nimg = images shown so far.
        """
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Plain-data state needed to continue training exactly (per rank)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict()` returned."""
        if state:
            raise ValueError(f'{type(self).__name__} has no state, but the snapshot holds {sorted(state)}')

    def shared_state_dict(self) -> dict:
        """Plain-data state that is the same on every rank (stored once per snapshot, from rank 0),
        e.g. a frozen copy of the source network."""
        return {}

    def load_shared_state_dict(self, state: dict) -> None:
        """Restore what `shared_state_dict()` returned."""
        if state:
            raise ValueError(f'{type(self).__name__} has no shared state, but the snapshot holds {sorted(state)}')

    def snapshot_extras(self) -> dict:
        """Extra top-level snapshot keys (plain data and tensors)."""
        return {}

    def on_snapshot(self, G_ema: torch.nn.Module, run_dir: str, label: str) -> dict:
        """Rank 0, after each network snapshot: write extra files (e.g. per-domain grids) and
        return `{stat name: float}` evaluation results for the stats sinks (default: none)."""
        return {}

# ---------------------------------------------------------------------------------------------


def lazy_phases(G_main_names: tuple[str, str], D_main_names: tuple[str, str],
                G_reg_interval: int | None, D_reg_interval: int | None) -> list[Phase]:
    """Official phase list: per network either (main every step, reg every k steps) when a reg
    interval k is set, or one combined phase every step. Names are (combined, main, reg)."""
    phases = []
    for module, names, reg_interval in (('G', G_main_names, G_reg_interval), ('D', D_main_names, D_reg_interval)):
        both, main, reg = names
        if reg_interval is None or reg_interval == 0:
            phases.append(Phase(both, module, 1))
        else:
            phases.append(Phase(main, module, 1))
            phases.append(Phase(reg, module, int(reg_interval)))
    return phases


class StyleGAN2Loss(Loss):
    """StyleGAN2-ADA objective (spec section 6)."""

    def __init__(self,
        device,                     # torch.device of the networks.
        G_mapping,                  # z, c -> ws [N, num_ws, w_dim].
        G_synthesis,                # ws -> images [N, C, H, W].
        D,                          # images, c -> logits [N, 1].
        augment_pipe=None,          # Differentiable augmentation applied to every D input; None = off.
        batch_gpu=None,             # Images per accumulation round on this GPU (checked); None = any.
        style_mixing_prob=0.9,      # Probability of mixing two latents at a random crossover layer.
        r1_gamma=10,                # R1 weight gamma; the penalty is gamma/2 * |grad D(real)|^2. 0 = off.
        pl_batch_shrink=2,          # Path-length reg uses batch_gpu // pl_batch_shrink images.
        pl_decay=0.01,              # Decay of the running mean path length.
        pl_weight=2,                # Path-length penalty weight. 0 = off.
        fake_images=None,           # Function (z, c) -> images of the adversarial phases (Gmain, Dmain); None = run_G.
        update_emas_in_D_fakes=False,  # StyleGAN3 rule: W average and magnitude EMAs move only while D's fakes
                                    # are rendered (update_emas=True there, False elsewhere). False = StyleGAN2-ADA
                                    # rule (the mapping updates its W average whenever G is in training mode).
        blur_init_sigma=0,          # Gaussian blur of every D input (real and fake) at the start, std in pixels; 0 = off.
        blur_fade_kimg=0,           # The blur std falls linearly to 0 over this many kimg; 0 = no blur.
    ):
        super().__init__()
        self.make_fakes = fake_images
        self.device = torch.device(device)
        self.G_mapping = G_mapping
        self.G_synthesis = G_synthesis
        self.D = D
        self.augment_pipe = augment_pipe
        self.batch_gpu = batch_gpu
        self.style_mixing_prob = float(style_mixing_prob)
        self.r1_gamma = float(r1_gamma)
        self.pl_batch_shrink = int(pl_batch_shrink)
        self.pl_decay = float(pl_decay)
        self.pl_weight = float(pl_weight)
        self.update_emas_in_D_fakes = bool(update_emas_in_D_fakes)
        self.blur_init_sigma = float(blur_init_sigma)
        self.blur_fade_kimg = float(blur_fade_kimg)
        self.pl_mean = torch.zeros([], device=self.device)  # Running mean of path lengths (per rank).
        if self.pl_batch_shrink < 1:
            raise ValueError(f'StyleGAN2Loss: pl_batch_shrink must be >= 1, got {pl_batch_shrink}')
        if self.blur_init_sigma < 0 or self.blur_fade_kimg < 0:
            raise ValueError(f'StyleGAN2Loss: blur_init_sigma and blur_fade_kimg must be >= 0, '
                             f'got {blur_init_sigma} and {blur_fade_kimg}')

    def get_phases(self, G_reg_interval, D_reg_interval):
        return lazy_phases(('Gboth', 'Gmain', 'Greg'), ('Dboth', 'Dmain', 'Dreg'), G_reg_interval, D_reg_interval)

    def run_G(self, z: torch.Tensor, c: torch.Tensor, need_ws_grad: bool = False,
              update_emas: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and their ws, with style mixing (spec 6: crossover layer ~ U{1..num_ws-1} with
        probability style_mixing_prob; the second latent does not update w_avg).

        `update_emas` counts only with `update_emas_in_D_fakes` (StyleGAN3): then it alone decides
        whether the W average and the magnitude EMAs move."""
        emas = dict(update_emas=bool(update_emas)) if self.update_emas_in_D_fakes else {}
        ws = self.G_mapping(z, c, **emas)
        if self.style_mixing_prob > 0:
            num_ws = ws.shape[1]
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, num_ws)
            mix = torch.rand([], device=ws.device) < self.style_mixing_prob
            cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, num_ws))
            ws[:, cutoff:] = self.G_mapping(torch.randn_like(z), c, skip_w_avg_update=True)[:, cutoff:]
        if need_ws_grad and not ws.requires_grad:
            # A frozen mapping (domain expansion trains only the synthesis) gives ws without a graph;
            # path-length regularisation still differentiates the image with respect to them.
            ws = ws.detach().requires_grad_(True)
        img = self.G_synthesis(ws, **emas)
        return img, ws

    def blur_sigma(self, cur_nimg: int) -> float:
        """Std (pixels) of the D-input blur after `cur_nimg` images: blur_init_sigma fading linearly to 0."""
        if self.blur_fade_kimg <= 0:
            return 0.0
        return max(1 - cur_nimg / (self.blur_fade_kimg * 1e3), 0) * self.blur_init_sigma

    def run_D(self, img: torch.Tensor, c: torch.Tensor, blur_sigma: float = 0.0) -> torch.Tensor:
        """D logits [N, 1] of (blurred, augmented) images."""
        img = blur_images(img, blur_sigma)
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        if phase not in ('Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth'):
            raise ValueError(f"StyleGAN2Loss: unknown phase '{phase}'")
        if self.batch_gpu is not None:
            misc.assert_shape(gen_z, [self.batch_gpu, None])
        do_Gmain = phase in ('Gmain', 'Gboth')
        do_Dmain = phase in ('Dmain', 'Dboth')
        do_Gpl = phase in ('Greg', 'Gboth') and self.pl_weight != 0
        do_Dr1 = phase in ('Dreg', 'Dboth') and self.r1_gamma != 0
        blur_sigma = self.blur_sigma(cur_nimg)
        if do_Gmain:
            self._G_main(gen_z, gen_c, gain, blur_sigma)
        if do_Gpl:
            self._G_path_length(gen_z, gen_c, gain)
        loss_Dgen = self._D_fake(gen_z, gen_c, gain, blur_sigma) if do_Dmain else None
        if do_Dmain or do_Dr1:
            if real_img is None:
                raise ValueError(f"StyleGAN2Loss: phase '{phase}' needs real images, but the loop has no dataset")
            self._D_real(real_img, real_c, gain, loss_Dgen, do_Dr1, blur_sigma)

    def fake_images(self, z: torch.Tensor, c: torch.Tensor, update_emas: bool = False) -> torch.Tensor:
        """The fakes of the adversarial phases (Gmain, Dmain): `run_G`, or the `fake_images`
        function given to the constructor (domain expansion: base-subspace latents; it ignores
        `update_emas`). Path length always uses `run_G`."""
        if self.make_fakes is not None:
            return self.make_fakes(z, c)
        return self.run_G(z, c, update_emas=update_emas)[0]

    def _G_main(self, gen_z, gen_c, gain, blur_sigma=0.0):
        # Non-saturating logistic loss: softplus(-D(G(z))).
        gen_img = self.fake_images(gen_z, gen_c)
        gen_logits = self.run_D(gen_img, gen_c, blur_sigma)
        training_stats.report('Loss/scores/fake', gen_logits)
        training_stats.report('Loss/signs/fake', gen_logits.sign())
        loss_G = torch.nn.functional.softplus(-gen_logits)
        training_stats.report('Loss/G/loss', loss_G)
        loss_G.mean().mul(gain).backward()

    def _G_path_length(self, gen_z, gen_c, gain):
        # Path-length regularisation (StyleGAN2 paper section 3.2) on a shrunk batch.
        batch_size = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
        gen_img, gen_ws = self.run_G(gen_z[:batch_size], gen_c[:batch_size], need_ws_grad=True)
        pl_noise = torch.randn_like(gen_img) / np.sqrt(gen_img.shape[2] * gen_img.shape[3])
        pl_grads = torch.autograd.grad(outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws],
                                       create_graph=True, only_inputs=True)[0]
        pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()                   # [N]
        # As the official loss: the penalty uses the freshly updated mean (which carries a small
        # gradient through this batch's lengths); the stored mean is detached.
        pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.pl_decay)
        self.pl_mean.copy_(pl_mean.detach())
        pl_penalty = (pl_lengths - pl_mean).square()
        training_stats.report('Loss/pl_penalty', pl_penalty)
        loss_Gpl = pl_penalty * self.pl_weight
        training_stats.report('Loss/G/reg', loss_Gpl)
        # `gen_img[:, 0, 0, 0] * 0` keeps the synthesis output in the graph (the official trick
        # that lets DDP see every parameter take part).
        (gen_img[:, 0, 0, 0] * 0 + loss_Gpl).mean().mul(gain).backward()

    def _D_fake(self, gen_z, gen_c, gain, blur_sigma=0.0) -> torch.Tensor:
        # D on fakes: softplus(D(G(z))); G is not trained here. Returns the detached loss [N, 1].
        # The StyleGAN3 rule moves G's EMAs here only (update_emas is ignored otherwise).
        with torch.no_grad():
            gen_img = self.fake_images(gen_z, gen_c, update_emas=True)
        gen_logits = self.run_D(gen_img, gen_c, blur_sigma)
        training_stats.report('Loss/scores/fake', gen_logits)
        training_stats.report('Loss/signs/fake', gen_logits.sign())
        loss_Dgen = torch.nn.functional.softplus(gen_logits)
        loss_Dgen.mean().mul(gain).backward()
        return loss_Dgen.detach()

    def _D_real(self, real_img, real_c, gain, loss_Dgen, do_Dr1, blur_sigma=0.0):
        # D on reals: softplus(-D(x)) (main phase: loss_Dgen given) and/or
        # R1 = gamma/2 * |dD(x)/dx|^2 (Mescheder et al. 2018).
        do_Dmain = loss_Dgen is not None
        real_img_tmp = real_img.detach().requires_grad_(do_Dr1)
        real_logits = self.run_D(real_img_tmp, real_c, blur_sigma)
        training_stats.report('Loss/scores/real', real_logits)
        training_stats.report('Loss/signs/real', real_logits.sign())
        loss_Dreal = 0
        if do_Dmain:
            loss_Dreal = torch.nn.functional.softplus(-real_logits)
            training_stats.report('Loss/D/loss', loss_Dgen + loss_Dreal.detach())
        loss_Dr1 = 0
        if do_Dr1:
            r1_grads = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real_img_tmp],
                                           create_graph=True, only_inputs=True)[0]
            r1_penalty = r1_grads.square().sum([1, 2, 3])
            loss_Dr1 = r1_penalty * (self.r1_gamma / 2)
            training_stats.report('Loss/r1_penalty', r1_penalty)
            training_stats.report('Loss/D/reg', loss_Dr1)
        (real_logits * 0 + loss_Dreal + loss_Dr1).mean().mul(gain).backward()

    def state_dict(self):
        return dict(pl_mean=self.pl_mean.detach().cpu().clone())

    def load_state_dict(self, state):
        unknown = set(state) - {'pl_mean'}
        if unknown:
            raise ValueError(f'StyleGAN2Loss: unexpected loss state keys {sorted(unknown)}')
        self.pl_mean.copy_(torch.as_tensor(state['pl_mean']).to(self.pl_mean.device))


def blur_images(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable blur of `img` [N, C, H, W] (same size) with taps 2^-(k/sigma)^2, k = -3 sigma..3 sigma
    (the official StyleGAN3 loss; the base is 2, not e). sigma < 1/3 leaves the images as they are."""
    radius = int(np.floor(sigma * 3))
    if radius <= 0:
        return img
    taps = torch.arange(-radius, radius + 1, device=img.device, dtype=torch.float32).div(sigma).square().neg().exp2()
    return upfirdn2d.filter2d(img, taps / taps.sum())
