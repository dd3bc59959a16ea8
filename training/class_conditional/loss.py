"""The class-conditional baseline's objective (Appendix B, Eq. 10-11), as phases of the loop.

Per step, every sample z is rendered with class 0 (the source domain; replay alignment to the
frozen parent, Eq. 10) and with the class of a uniformly drawn task k (class k + 1; task k's loss
with the class-0 image of the same z as its base, Eq. 11). The adversarial phases are
StyleGAN2Loss's own on class-0 fakes (Eq. 10's L_GAN) against the parent's unconditional D. Total:

    L = lambda_expand * mean_n L_task  +  lambda_src * L_GAN  +  lambda_recon_l2 * L2  +  lambda_recon_lpips * LPIPS

Trained: the whole generator (class embedding, mapping, synthesis), as conditional StyleGAN2
trains it. Tasks whose latents are W codes (MyStyle's anchors) bypass the mapping, where the class
enters; such a sample of class k uses w + mean_z(mapping(z, k) - mapping(z, 0)) over the batch's z
(the class's mean offset in W; our choice, the paper uses only z-based NADA tasks).
"""

import copy

import torch
import torch.nn.functional as F

from torch_utils import misc
from torch_utils import training_stats
from training.class_conditional import graft
from training.expansion import constants
from training.expansion.config import parse_expansion_config
from training.expansion.loss import GAN_PHASES
from training.expansion.render import broadcast_ws
from training.expansion.tasks.base import build_tasks
from training.expansion.tasks.shared_models import SharedModels
from training.loss import Loss, Phase, StyleGAN2Loss

# ---------------------------------------------------------------------------------------------


class ClassConditionalLoss(Loss):
    """Source losses on class 0, task k's loss on class k + 1 (Appendix B)."""

    def __init__(self,
        device,                         # torch.device of the networks.
        G_mapping,                      # Conditional mapping z, c [N, K + 1] -> ws (trained).
        G_synthesis,                    # Synthesis ws -> images (trained).
        D,                              # Unconditional discriminator (used only when lambda_src > 0).
        expansion_cfg,                  # Expansion config dict: its tasks, in order, are classes 1..K.
        augment_pipe = None,            # Augmentation of D inputs; None = off.
        batch_gpu = None,               # Samples per accumulation round.
        G_frozen = None,                # Frozen copy of the grafted G at step 0 (class 0 = the parent), the replay target.
        resume_pkl = None,              # --resume, as recorded in the options; the loop loads it.
        lambda_src = constants.LAMBDA_SRC,  # Weight of the class-0 GAN loss (adv + R1 + path length); 0 = no D work.
        lambda_expand = constants.LAMBDA_EXPAND,  # Weight of the task losses on classes 1..K.
        lambda_recon_l2 = constants.LAMBDA_RECON_L2,  # Replay alignment of class 0, L2; 0 = off.
        lambda_recon_lpips = constants.LAMBDA_RECON_LPIPS,  # Replay alignment of class 0, LPIPS; 0 = off.
        lpips_net = 'alex',             # LPIPS backbone for replay alignment.
        replay_noise = 'independent',   # 'independent' (official) or 'shared' noise for the frozen render.
        lpips_random_backbone = False,  # True: random-init LPIPS backbone (offline demo; reported).
        style_mixing_prob = 0.9,        # Path-length phase only.
        r1_gamma = 10.0,                # R1 weight; 0 = off.
        pl_batch_shrink = 2,            # Path-length batch divisor.
        pl_decay = 0.01,                # Path-length running-mean decay.
        pl_weight = 2.0,                # Path-length weight; 0 = off.
        shared_models = None,           # SharedModels to reuse (tests); None = new.
    ):
        super().__init__()
        self.device = torch.device(device)
        self.G_mapping = G_mapping
        self.G_synthesis = G_synthesis
        self.lambda_src, self.lambda_expand = float(lambda_src), float(lambda_expand)
        self.lambda_recon_l2, self.lambda_recon_lpips = float(lambda_recon_l2), float(lambda_recon_lpips)
        for name in ('lambda_src', 'lambda_expand', 'lambda_recon_l2', 'lambda_recon_lpips'):
            if not getattr(self, name) >= 0:
                raise ValueError(f'--{name} must be >= 0, got {getattr(self, name)}')
        if replay_noise not in ('independent', 'shared'):
            raise ValueError(f"replay_noise must be 'independent' or 'shared', got {replay_noise!r}")
        self.replay_noise = replay_noise
        self.config = parse_expansion_config(expansion_cfg, w_dim=int(G_mapping.w_dim),
                                             img_resolution=G_synthesis.img_resolution,
                                             img_channels=G_synthesis.img_channels)
        self.num_classes = len(self.config.tasks) + 1
        if G_mapping.c_dim != self.num_classes:
            raise ValueError(f'ClassConditionalLoss: the config has {len(self.config.tasks)} tasks, so G needs '
                             f'c_dim={self.num_classes} (class 0 = source), it has {G_mapping.c_dim}')
        self.gan = StyleGAN2Loss(device, G_mapping, G_synthesis, D, augment_pipe=augment_pipe,
                                 style_mixing_prob=style_mixing_prob, r1_gamma=r1_gamma,
                                 pl_batch_shrink=pl_batch_shrink, pl_decay=pl_decay, pl_weight=pl_weight,
                                 fake_images=self.source_images)
        self.models = shared_models if shared_models is not None else SharedModels(
            self.device, lpips_random_backbone=lpips_random_backbone)
        self.tasks = build_tasks(self.config, self.device, self.models, z_dim=G_mapping.z_dim,
                                 img_resolution=G_synthesis.img_resolution, img_channels=G_synthesis.img_channels)
        self.perceptual = self.models.perceptual(lpips_net) if self.lambda_recon_lpips > 0 else None
        self.G_frozen = None
        if self.lambda_recon_l2 > 0 or self.lambda_recon_lpips > 0:
            if G_frozen is None:
                raise ValueError('ClassConditionalLoss: a recon lambda > 0 needs G_frozen (see resolve_inputs)')
            self.G_frozen = G_frozen.eval().requires_grad_(False)

    @classmethod
    def resolve_inputs(cls, loss_kwargs: dict, G, G_ema, snapshot: dict | None) -> dict:
        """The replay target: a frozen copy of the grafted G as loaded (its class 0 is the parent;
        a continued run restores the original from its snapshot's loss state)."""
        recon = [float(loss_kwargs.get(name, default)) for name, default in (
            ('lambda_recon_l2', constants.LAMBDA_RECON_L2), ('lambda_recon_lpips', constants.LAMBDA_RECON_LPIPS))]
        return dict(G_frozen=copy.deepcopy(G).eval().requires_grad_(False) if any(v > 0 for v in recon) else None)

    # The loop loads the --resume parent through this (the parent is unconditional).
    load_resume_networks = staticmethod(graft.load_resume_networks)

    # --- interface with the loop -------------------------------------------------------------

    def get_phases(self, G_reg_interval, D_reg_interval):
        do_cond = (self.lambda_expand > 0 and len(self.tasks) > 0) or self.G_frozen is not None
        do_src = self.lambda_src > 0
        if not G_reg_interval:
            phases = [Phase('G_all', 'G', 1)] if (do_cond or do_src) else []
        else:
            phases = [Phase('G_classes', 'G', 1)] if do_cond else []
            if do_src:
                phases.append(Phase('G_adv', 'G', 1))
                if self.gan.pl_weight > 0:
                    phases.append(Phase('G_reg', 'G', int(G_reg_interval)))
        if do_src:
            if not D_reg_interval:
                phases.append(Phase('D_all', 'D', 1))
            else:
                phases.append(Phase('D_adv', 'D', 1))
                if self.gan.r1_gamma > 0:
                    phases.append(Phase('D_reg', 'D', int(D_reg_interval)))
        return phases

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        if phase not in ('G_classes', *GAN_PHASES):
            raise ValueError(f"ClassConditionalLoss: unknown phase '{phase}'")
        if phase in ('G_classes', 'G_all'):
            self.classes_and_recon(gen_z, gain)
        if phase in GAN_PHASES and self.lambda_src > 0:
            if phase.startswith('D') and real_img is None:
                raise ValueError(f"phase '{phase}' needs real images: pass --data, or set --lambda_src 0")
            # Eq. 10's L_GAN on class-0 fakes (path length too); the unconditional D ignores c.
            c0 = graft.class_labels(graft.SOURCE_CLASS, gen_z.shape[0], self.num_classes, gen_z.device)
            self.gan.accumulate_gradients(GAN_PHASES[phase], real_img, real_c, gen_z, c0,
                                          gain * self.lambda_src, cur_nimg)

    def state_dict(self):
        return dict(gan=self.gan.state_dict())

    def load_state_dict(self, state):
        unknown = set(state) - {'gan'}
        if unknown:
            raise ValueError(f'ClassConditionalLoss: unexpected loss state keys {sorted(unknown)}')
        self.gan.load_state_dict(state.get('gan', {}))

    def shared_state_dict(self):
        # The replay target (the parent as grafted), so a continued run aligns to the same one.
        if self.G_frozen is None:
            return {}
        return dict(frozen_G={k: v.detach().cpu().clone() for k, v in self.G_frozen.state_dict().items()})

    def load_shared_state_dict(self, state):
        unknown = set(state) - {'frozen_G'}
        if unknown:
            raise ValueError(f'ClassConditionalLoss: unexpected shared loss state keys {sorted(unknown)}')
        if self.G_frozen is not None and 'frozen_G' in state:
            self.G_frozen.load_state_dict(state['frozen_G'])

    def snapshot_extras(self):
        # What generate.py --class needs to know: class 0 = source, class k + 1 = task k.
        return dict(class_conditional_cfg=self.config.to_dict(),
                    class_names=['source'] + [task.name for task in self.tasks])

    # --- the classes phase (Eq. 10 replay + Eq. 11) ---------------------------------------------

    def source_images(self, z: torch.Tensor, c: torch.Tensor = None) -> torch.Tensor:
        """Class-0 fakes of the adversarial phases (the mapping's w_avg tracks class 0 only)."""
        return self.render(z, graft.SOURCE_CLASS, track_w_avg=True)

    def class_w(self, z: torch.Tensor, class_index: int, track_w_avg: bool = False) -> torch.Tensor:
        """W `[N, w_dim]` of z under class `class_index`."""
        c = graft.class_labels(class_index, z.shape[0], self.num_classes, z.device)
        return self.G_mapping(z, c, skip_w_avg_update=not track_w_avg)[:, 0]

    def render(self, z: torch.Tensor, class_index: int, track_w_avg: bool = False) -> torch.Tensor:
        return self.G_synthesis(broadcast_ws(self.class_w(z, class_index, track_w_avg), self.G_synthesis.num_ws))

    def sample_latents(self, gen_z):
        """Per sample a uniformly drawn task; returns (w0 [n, w_dim] class 0, wk [n, w_dim] its
        task's class, groups [(task k, positions, context)])."""
        n = gen_z.shape[0]
        task_index = torch.randint(len(self.tasks), [n], device=self.device)
        w0 = self.class_w(gen_z, graft.SOURCE_CLASS, track_w_avg=True)
        wk = torch.empty_like(w0)
        groups = []
        for k in torch.unique(task_index).tolist():
            positions = (task_index == k).nonzero()[:, 0]
            batch = self.tasks[k].sample(len(positions), self.device)
            groups.append((k, positions, batch.context))
            if batch.z is not None:
                z = batch.z.to(self.device)
                w0_k, wk_k = self.class_w(z, graft.SOURCE_CLASS), self.class_w(z, k + 1)
            else:  # W latents: the class's mean offset in W over the batch's z (module docstring)
                offset = (self.class_w(gen_z, k + 1) - self.class_w(gen_z, graft.SOURCE_CLASS)).mean(dim=0)
                w0_k = batch.w.to(self.device, torch.float32)
                wk_k = w0_k + offset
            w0 = w0.index_put((positions,), w0_k)
            wk = wk.index_put((positions,), wk_k)
        return w0, wk, groups

    def classes_and_recon(self, gen_z, gain):
        """Eq. 11 (task k's loss on class k + 1, base = class 0 of the same z) + Eq. 10's replay."""
        n = gen_z.shape[0]
        w0, wk, groups = self.sample_latents(gen_z) if self.tasks else (self.class_w(gen_z, 0, True), None, [])
        shared = self.replay_noise == 'shared' and self.G_frozen is not None
        # Without tasks base_img is the replayed render, so its noise draws are the ones to repeat.
        rng_state = misc.rng_state(self.device) if shared and not self.tasks else None
        base_img = self.G_synthesis(broadcast_ws(w0, self.G_synthesis.num_ws), noise_mode='random')
        total = base_img.new_zeros([])
        if self.lambda_expand > 0 and groups:
            edit_img = self.G_synthesis(broadcast_ws(wk, self.G_synthesis.num_ws), noise_mode='random')
            expand = base_img.new_zeros([])
            for k, positions, context in groups:
                errors = self.tasks[k].error(context, base_img[positions].detach(), edit_img[positions])   # [n_k]
                training_stats.report(f'Loss/domain/{self.tasks[k].name}', errors)
                expand = expand + errors.sum()
            expand = expand / n                                                   # Eq. 11, mean over the batch
            training_stats.report('Loss/expand', expand)
            total = total + self.lambda_expand * expand
        if self.G_frozen is not None:
            source_img = None
            if shared and self.tasks:
                rng_state = misc.rng_state(self.device)
                source_img = self.render(gen_z, graft.SOURCE_CLASS)
            with torch.no_grad():
                c0 = graft.class_labels(graft.SOURCE_CLASS, n, self.num_classes, gen_z.device)
                if rng_state is not None:
                    misc.set_rng_state(self.device, rng_state)   # the same noise draws as the replayed render
                target = self.G_frozen(gen_z, c0, noise_mode='random')           # the parent's image of z
            if source_img is None:
                source_img = base_img if not self.tasks else self.render(gen_z, graft.SOURCE_CLASS)
            if self.lambda_recon_l2 > 0:
                l2 = F.mse_loss(source_img, target)                                # Eq. 10 replay, L2
                training_stats.report('Loss/recon_l2', l2)
                total = total + self.lambda_recon_l2 * l2
            if self.lambda_recon_lpips > 0:
                lp = self.perceptual(source_img, target).mean()                   # Eq. 10 replay, LPIPS
                training_stats.report('Loss/recon_lpips', lp)
                total = total + self.lambda_recon_lpips * lp
        training_stats.report('Loss/G/classes_and_recon', total)
        total.mul(gain).backward()
