"""The DDPM noise schedule (Ho et al. 2020) and ancestral sampling with a model that predicts the
clean latent x0 (the paper's sampler "produces an estimate of the input latents").

Forward process:  x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,  eps ~ N(0, I),  t = 0 .. T-1.
Reverse step:     x_{t-1} ~ N(c0_t x0_hat + ct_t x_t, sigma_t^2), the mean of the Gaussian posterior
                  q(x_{t-1} | x_t, x0) with x0 replaced by the model's prediction (Ho et al. Eq. 6-7);
                  the last step (t = 0) returns its mean, which is x0_hat.
Step variance:    Ho et al.'s two choices (Sec. 3.2): 'beta' (sigma_t^2 = beta_t, exact for
                  x0 ~ N(0, I)) or 'posterior' (sigma_t^2 = the posterior variance, exact for a single
                  point x0). Our latents are standardised to unit variance per coordinate, so 'beta'
                  is the default; 'posterior' under-disperses at finite T (variance 0.92 of the
                  data's at T = 50 for unit-Gaussian data with the exact denoiser, tests/blackbox).

Written here (about 40 lines of arithmetic) rather than taken from `diffusers`: the training
losses need only `add_noise` and the sampling loop only the posterior coefficients, and the
tests check both against closed forms (see README, "Black-box adaptation").
"""

import math

import torch

#----------------------------------------------------------------------------

SCHEDULES = ('cosine', 'linear')
VARIANCES = ('beta', 'posterior')   # sigma_t^2 of the reverse steps (module docstring).

def make_betas(num_timesteps: int, schedule: str = 'cosine') -> torch.Tensor:
    """Noise variances beta_t `[T]` in float64.

    'cosine' (Nichol & Dhariwal 2021): abar_t = f(t + 1) / f(0), f(t) = cos^2((t / T + s) / (1 + s) * pi / 2),
    s = 0.008, betas clipped to 0.999. 'linear' (Ho et al. 2020): 1e-4 .. 0.02 for T = 1000,
    both ends scaled by 1000 / T so that shorter schedules still end near pure noise.
    """
    if num_timesteps < 2:
        raise ValueError(f'make_betas: num_timesteps must be >= 2, got {num_timesteps}')
    T = int(num_timesteps)
    if schedule == 'cosine':
        s = 0.008
        f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
        abar = torch.tensor([f(t + 1) / f(0) for t in range(T)], dtype=torch.float64)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        return (1 - abar / abar_prev).clamp(max=0.999)
    if schedule == 'linear':
        scale = 1000 / T
        return torch.linspace(1e-4 * scale, 0.02 * scale, T, dtype=torch.float64)
    raise ValueError(f'unknown noise schedule {schedule!r}; choose one of {", ".join(SCHEDULES)}')

#----------------------------------------------------------------------------

class DiffusionSchedule:
    """Coefficients of the forward process and of the reverse posterior, float64 on the CPU;
    `add_noise` and `posterior` move what they need to the input's device and dtype."""

    def __init__(self,
        num_timesteps = 100,    # T: diffusion steps in training and sampling.
        schedule = 'cosine',    # How beta_t grows: one of SCHEDULES.
        variance = 'beta',      # sigma_t^2 of the reverse steps: one of VARIANCES.
    ):
        if variance not in VARIANCES:
            raise ValueError(f'unknown reverse-step variance {variance!r}; choose one of {", ".join(VARIANCES)}')
        self.num_timesteps = int(num_timesteps)
        self.schedule = schedule
        self.variance = variance
        self.betas = make_betas(self.num_timesteps, schedule)                   # [T]
        alphas = 1 - self.betas
        self.abar = torch.cumprod(alphas, dim=0)                                # [T]
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.abar[:-1]])
        # Posterior q(x_{t-1} | x_t, x0) = N(c0 x0 + ct x_t, var), Ho et al. Eq. 7.
        self.coef_x0 = self.betas * abar_prev.sqrt() / (1 - self.abar)
        self.coef_xt = alphas.sqrt() * (1 - abar_prev) / (1 - self.abar)
        self.posterior_var = self.betas * (1 - abar_prev) / (1 - self.abar)
        self.step_var = self.betas if variance == 'beta' else self.posterior_var   # sigma_t^2 [T]

    def __repr__(self):
        return (f'DiffusionSchedule(num_timesteps={self.num_timesteps}, schedule={self.schedule!r}, '
                f'variance={self.variance!r})')

    def kwargs(self) -> dict:
        """Constructor arguments (stored in the sampler snapshot)."""
        return dict(num_timesteps=self.num_timesteps, schedule=self.schedule, variance=self.variance)

    @staticmethod
    def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] shaped `[N, 1, ..., 1]` to broadcast against `like` `[N, ...]`."""
        out = values.to(like.device)[t.to(like.device)].to(like.dtype)
        return out.reshape([-1] + [1] * (like.ndim - 1))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, for per-sample steps `t` `[N]` (int64)."""
        return self._at(self.abar.sqrt(), t, x0) * x0 + self._at((1 - self.abar).sqrt(), t, x0) * noise

    def posterior(self, x0_hat: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple:
        """(mean, variance) of x_{t-1} given x_t and the predicted x0, per-sample steps `t` `[N]`:
        the posterior mean and the reverse-step variance sigma_t^2 chosen by `variance`."""
        mean = self._at(self.coef_x0, t, x_t) * x0_hat + self._at(self.coef_xt, t, x_t) * x_t
        return mean, self._at(self.step_var, t, x_t)

    def noise_shape(self, latent_shape) -> list:
        """Shape `[T, ...latent_shape]` of the noise one sample's reverse process consumes:
        index 0 is the start x_{T-1}, index i >= 1 the noise added in the i-th reverse step."""
        return [self.num_timesteps] + list(latent_shape)

    @torch.no_grad()
    def sample(self, predict_x0, noise: torch.Tensor) -> torch.Tensor:
        """Ancestral sampling from pre-drawn noise `[T, N, ...]` (see `noise_shape`); returns x0 `[N, ...]`.

        The caller draws the noise, so that each sample's result depends only on its own noise
        (a seed per sample), never on the batch it is drawn in.

        Args:
            predict_x0: callable `(x_t [N, ...], t [N] int64) -> x0_hat [N, ...]`.
            noise:      standard normal `[T, N, ...]`.
        """
        if noise.shape[0] != self.num_timesteps:
            raise ValueError(f'DiffusionSchedule.sample: noise has {noise.shape[0]} steps, expected {self.num_timesteps}')
        x = noise[0]
        for i, step in enumerate(reversed(range(self.num_timesteps))):
            t = torch.full([x.shape[0]], step, dtype=torch.int64, device=x.device)
            mean, var = self.posterior(predict_x0(x, t), x, t)
            x = mean if step == 0 else mean + var.sqrt() * noise[i + 1]
        return x

#----------------------------------------------------------------------------
