"""The sampler's training objective (paper Eq. 2):

    L = L_MSE + 0.5 L_KL + 0.1 L_geom + 0.2 L_VGG

for a batch of standardised target latents x0 `[B, num_ws, w_dim]`:
  - a step t ~ U{0..T-1} and noise give x_t; the denoiser predicts x0_hat (the clean latent);
  - L_MSE  = mean (x0_hat - x0)^2;
  - x0_hat is de-standardised and style-mixed with random source latents (mixing.py), w_hat';
  - L_KL   = KL(N(m, s^2) || N(0, 1)) averaged over coordinates, m and s^2 the batch mean and
             variance of the standardised w_hat' (the batch should look like the standard normal);
  - L_geom = geometry_loss(standardised w_hat', G(w_hat')) (geometry.py, Eq. 3-5);
  - L_VGG  = mean over the batch of perceptual_distance(G(w_hat'), G(x0)) (vgg.py, Eq. 6).
The generator is frozen ("not updated"); gradients of L_geom and L_VGG pass through it into the
denoiser. Terms with weight 0 are not computed (weights mse=1, others 0: the MSE-only baseline).
"""

import torch

from training.blackbox import geometry
from training.blackbox import mixing
from training.blackbox import vgg as vgg_module

#----------------------------------------------------------------------------

LOSS_WEIGHTS = dict(mse=1.0, kl=0.5, geom=0.1, vgg=0.2)    # Eq. 2.
MSE_ONLY_WEIGHTS = dict(mse=1.0, kl=0.0, geom=0.0, vgg=0.0)

def kl_to_standard_normal(x: torch.Tensor) -> torch.Tensor:
    """Mean over coordinates of KL(N(m, s^2) || N(0, 1)), m and s^2 the batch statistics of `x` `[B, ...]`."""
    flat = x.flatten(1)
    m, v = flat.mean(dim=0), flat.var(dim=0, unbiased=False).clamp(min=1e-8)
    return 0.5 * (v + m.square() - 1 - v.log()).mean()

class BlackboxLoss:
    """Computes Eq. 2 for one batch; holds the frozen generator, the normaliser and the schedule."""

    def __init__(self,
        G,                          # Source generator (frozen here); its synthesis renders, its mapping draws mixing latents.
        normalizer,                 # LatentNormalizer of the target latents.
        schedule,                   # DiffusionSchedule.
        vgg = None,                 # VGGFeatures for L_VGG; None: only allowed when weights['vgg'] == 0.
        weights = None,             # dict mse/kl/geom/vgg; None: LOSS_WEIGHTS (Eq. 2).
        mix_alpha = mixing.DEFAULT_ALPHA,   # Style-mixing weight alpha (0: no mixing).
        mix_first_layer = None,     # First mixed layer; None: mixing.default_first_layer(num_ws).
        geom_k = geometry.DEFAULT_K,        # Tangent subspace dimension k of L_geom.
    ):
        self.G = G.eval().requires_grad_(False)
        self.normalizer = normalizer
        self.schedule = schedule
        self.weights = dict(LOSS_WEIGHTS if weights is None else weights)
        if set(self.weights) != set(LOSS_WEIGHTS):
            raise ValueError(f'BlackboxLoss: weights must have the keys {sorted(LOSS_WEIGHTS)}, got {sorted(self.weights)}')
        if self.weights['vgg'] > 0 and vgg is None:
            raise ValueError('BlackboxLoss: weights["vgg"] > 0 needs a VGGFeatures network (vgg=)')
        self.vgg = vgg
        self.mix_alpha = float(mix_alpha)
        num_ws = G.synthesis.num_ws
        self.mix_first_layer = mixing.default_first_layer(num_ws) if mix_first_layer is None else int(mix_first_layer)
        self.geom_k = int(geom_k)

    def render(self, ws: torch.Tensor) -> torch.Tensor:
        """Images `[N, C, H, W]` of raw W+ latents, the generator's constant noise."""
        return self.G.synthesis(ws, noise_mode='const')

    def __call__(self, denoiser: torch.nn.Module, x0: torch.Tensor, generator: torch.Generator) -> tuple:
        """(total loss, {term: float}) for standardised target latents x0 `[B, num_ws, w_dim]`."""
        w = self.weights
        B, device = x0.shape[0], x0.device
        t = torch.randint(0, self.schedule.num_timesteps, [B], generator=generator, device=device)
        noise = torch.randn(x0.shape, generator=generator, device=device)
        x0_hat = denoiser(self.schedule.add_noise(x0, noise, t), t)
        terms = dict(mse=(x0_hat - x0).square().mean())
        if w['kl'] > 0 or w['geom'] > 0 or w['vgg'] > 0:
            w_source = mixing.source_latents(self.G.mapping, B, generator, device)
            ws_mixed = mixing.mix_styles(self.normalizer.denormalize(x0_hat), w_source, self.mix_alpha, self.mix_first_layer)
            ws_mixed_hat = self.normalizer.normalize(ws_mixed)
            if w['kl'] > 0:
                terms['kl'] = kl_to_standard_normal(ws_mixed_hat)
            if w['geom'] > 0 or w['vgg'] > 0:
                images = self.render(ws_mixed)
                if w['geom'] > 0:
                    terms['geom'] = geometry.geometry_loss(ws_mixed_hat, images, k=self.geom_k)
                if w['vgg'] > 0:
                    with torch.no_grad():
                        target_images = self.render(self.normalizer.denormalize(x0))
                    terms['vgg'] = vgg_module.perceptual_distance(self.vgg, images, target_images).mean()
        total = sum(w[name] * value for name, value in terms.items())   # Eq. 2
        return total, {name: float(value.detach()) for name, value in terms.items()}

#----------------------------------------------------------------------------
