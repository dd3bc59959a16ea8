"""The domain-expansion objective (paper Sec. 3.2-3.3, Eq. 4-7), as phases of the training loop.

Per step, on base-subspace latents only, the source domain keeps its original GAN loss (Eq. 5)
and replay alignment against a frozen copy of the source synthesis network (Eq. 6); every new
domain k trains its own adaptation loss on its repurposed subspace (Eq. 4), or, for a task with
`"parameterization"`, on theta applied to its base latent (theta_domains.py). Total (Eq. 7):

    L = lambda_expand * sum_k L_k  +  lambda_src * L_GAN  +  lambda_recon_l2 * L2  +  lambda_recon_lpips * LPIPS

Phases (spec section 8): 'G_expand_and_recon' (every step), 'G_adv' (every step), 'G_reg'
(path length, every G_reg_interval), 'D_adv', 'D_reg' (R1, every D_reg_interval); without lazy
regularisation 'G_all' and 'D_all'. All G phases share one optimizer over `G.synthesis` only.
The GAN phases are StyleGAN2Loss's own ('G_adv' runs its 'Gmain', ... see GAN_PHASES), called
through its public `accumulate_gradients` with the base-subspace fakes handed in as a function.

Inputs resolved once by the loop set-up (`DomainExpansionLoss.resolve_inputs`), never by the loss:
the latent basis (the resumed snapshot's stored one, else --latent_factors_path, else SeFA of the
starting G_ema) and the frozen source synthesis.

Departures from the official code, each deliberate (see README, "Domain expansion"):
- A lambda set to 0 removes exactly its term and its compute. The official code ties the LPIPS
  switch to the L2 weight and never runs expansion without lazy regularisation ('Gall' typo).
- `lambda_src` scales the GAN terms (the official code only switches them on/off; at the
  default 1 both agree); at 0 there is no D work at all, including R1 and path length.
- `replay_noise='shared'` (opt-in) renders the frozen replay target with the same noise as the
  trained render; the default 'independent' draws its own noise as the official code does.
"""

import copy

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import misc
from torch_utils import training_stats
from training.expansion import constants
from training.expansion import evaluation
from training.expansion import basis as latent_basis_lib
from training.expansion.config import parse_expansion_config
from training.loss import Loss, Phase, StyleGAN2Loss
from training.expansion.render import broadcast_ws
from training.expansion.subspaces import LatentSubspaces
from training.expansion.tasks.base import build_tasks, get_task_class, registered_task_types
from training.expansion.tasks.shared_models import SharedModels
from training.expansion.theta_domains import SNAPSHOT_KEY as THETA_SNAPSHOT_KEY, ExpansionDomains, ThetaDomains

# ---------------------------------------------------------------------------------------------


class DomainExpansionLoss(Loss):
    """Expansion losses on repurposed subspaces + source-domain losses on the base subspace."""

    def __init__(self,
        device,                         # torch.device of the networks.
        G_mapping,                      # Frozen mapping z, c -> ws (runs in training mode: w_avg keeps tracking).
        G_synthesis,                    # Trained synthesis ws -> images.
        D,                              # Discriminator (used only when lambda_src > 0).
        expansion_cfg,                  # Expansion config dict (validated here against w_dim).
        augment_pipe = None,            # Augmentation of D inputs; None = off.
        batch_gpu = None,               # Samples per accumulation round (each gets a task).
        latent_basis = None,            # [w_dim, w_dim] basis, columns = directions (required; see resolve_inputs).
        G_synthesis_frozen = None,      # Frozen source synthesis, the replay target (Eq. 6); required when a recon lambda > 0.
        latent_factors_path = None,     # --latent_factors_path, as recorded in the options; read by resolve_inputs only.
        resume_pkl = None,              # --resume, as recorded in the options; the loop set-up loads it, not the loss.
        subspace_distance = constants.SUBSPACE_DISTANCE,  # s: distance of each repurposed subspace from the base one.
        lambda_src = constants.LAMBDA_SRC,  # Weight of the source GAN loss (adv + R1 + path length); 0 = no D work.
        lambda_expand = constants.LAMBDA_EXPAND,  # Weight of the summed task losses; 0 = no edit renders.
        lambda_recon_l2 = constants.LAMBDA_RECON_L2,  # Replay alignment, L2 to the frozen source; 0 = off.
        lambda_recon_lpips = constants.LAMBDA_RECON_LPIPS,  # Replay alignment, LPIPS to the frozen source; 0 = off.
        replay_noise = 'independent',   # 'independent' (official) or 'shared' noise for the frozen render.
        lpips_net = 'alex',             # LPIPS backbone for replay alignment.
        lpips_random_backbone = False,  # True: random-init LPIPS backbone (offline demo; reported).
        style_mixing_prob = 0.9,        # Path-length phase only (as the official G_reg).
        r1_gamma = 10.0,                # R1 weight; 0 = off.
        pl_batch_shrink = 2,            # Path-length batch divisor.
        pl_decay = 0.01,                # Path-length running-mean decay.
        pl_weight = 2.0,                # Path-length weight; 0 = off.
        shared_models = None,           # SharedModels to reuse (tests inject small stand-ins); None = new.
        parameterized_domains = None,   # Stored theta entries of the starting snapshot (resolve_inputs); None = identity.
    ):
        super().__init__()
        self.device = torch.device(device)
        self.G_mapping = G_mapping
        self.G_synthesis = G_synthesis
        self.D = D
        self.batch_gpu = batch_gpu
        self.lambda_src = _non_negative('lambda_src', lambda_src)
        self.lambda_expand = _non_negative('lambda_expand', lambda_expand)
        self.lambda_recon_l2 = _non_negative('lambda_recon_l2', lambda_recon_l2)
        self.lambda_recon_lpips = _non_negative('lambda_recon_lpips', lambda_recon_lpips)
        if replay_noise not in ('independent', 'shared'):
            raise ValueError(f"replay_noise must be 'independent' or 'shared', got {replay_noise!r}")
        self.replay_noise = replay_noise
        self.lpips_net = lpips_net
        self.num_ws = int(G_synthesis.num_ws)

        w_dim = int(G_mapping.w_dim)
        self.config = parse_expansion_config(expansion_cfg, w_dim=w_dim, img_resolution=G_synthesis.img_resolution,
                                             img_channels=G_synthesis.img_channels)
        if latent_basis is None:
            raise ValueError('DomainExpansionLoss needs latent_basis: resolve it (and the frozen source synthesis) '
                             'with DomainExpansionLoss.resolve_inputs(loss_kwargs, G=, G_ema=, snapshot=)')
        basis = latent_basis_lib.check_latent_basis(latent_basis, w_dim, 'latent_basis')
        self.subspaces = LatentSubspaces(basis, self.config.repurposed_dims, subspace_distance).to(self.device)

        # The source-domain GAN objective is StyleGAN2's, applied to base-subspace fakes (Eq. 5).
        self.gan = StyleGAN2Loss(device, G_mapping, G_synthesis, D, augment_pipe=augment_pipe,
                                 style_mixing_prob=style_mixing_prob, r1_gamma=r1_gamma,
                                 pl_batch_shrink=pl_batch_shrink, pl_decay=pl_decay, pl_weight=pl_weight,
                                 fake_images=BaseSubspaceFakes(G_mapping, G_synthesis,
                                                               self.subspaces if self.lambda_expand > 0 else None))
        self.models = shared_models if shared_models is not None else SharedModels(
            self.device, lpips_random_backbone=lpips_random_backbone)
        self.tasks = build_tasks(self.config, self.device, self.models, z_dim=G_mapping.z_dim,
                                 img_resolution=G_synthesis.img_resolution, img_channels=G_synthesis.img_channels)
        theta_tasks = [task for task in self.config.tasks if task.parameterization is not None]
        self.theta_domains = ThetaDomains(G_synthesis, [task.name for task in theta_tasks],
                                          [task.parameterization for task in theta_tasks], stored=parameterized_domains,
                                          source='the starting snapshot').to(self.device)
        self.domains = ExpansionDomains(self.subspaces, self.config.domain_slots, self.theta_domains)
        self.perceptual = self.models.perceptual(lpips_net) if self.lambda_recon_lpips > 0 else None

        # Replay target: the source synthesis network, frozen (Eq. 6).
        self.G_synthesis_frozen = None
        if self.lambda_recon_l2 > 0 or self.lambda_recon_lpips > 0:
            if G_synthesis_frozen is None:
                raise ValueError('DomainExpansionLoss: lambda_recon_l2 / lambda_recon_lpips > 0 need G_synthesis_frozen '
                                 '(see DomainExpansionLoss.resolve_inputs)')
            self.G_synthesis_frozen = G_synthesis_frozen.eval().requires_grad_(False)

    @classmethod
    def pretrained_weights(cls, loss_kwargs: dict) -> tuple:
        """The pretrained networks a run with these (resolved) loss arguments will load: each
        registered task's (`BaseTask.pretrained_weights`) and the replay-alignment LPIPS, as
        ('clip', name) / ('lpips', backbone) pairs; checked before the run starts (launch)."""
        cfg = loss_kwargs.get('expansion_cfg') or {}
        shared = cfg.get('tasks_losses') or {}
        random_lpips = bool(loss_kwargs.get('lpips_random_backbone', False))
        weights = []
        for task in cfg.get('tasks') or []:
            type_name = task.get('type') if isinstance(task, dict) else None
            if not isinstance(type_name, str) or type_name not in registered_task_types():
                continue  # A user's own task class declares nothing here; it loads what it loads.
            kwargs = {**(shared.get(type_name) or {}), **(task.get('args') or {})}
            weights += get_task_class(type_name).pretrained_weights(kwargs)
        if float(loss_kwargs.get('lambda_recon_lpips', constants.LAMBDA_RECON_LPIPS)) > 0:
            weights.append(('lpips', loss_kwargs.get('lpips_net', 'alex')))
        return tuple(w for w in dict.fromkeys(weights) if not (random_lpips and w[0] == 'lpips'))

    @classmethod
    def resolve_inputs(cls, loss_kwargs: dict, G, G_ema, snapshot: dict | None) -> dict:
        """The basis and the replay target, resolved once from the networks the run starts from.

        Basis precedence (`basis.resolve_latent_basis`): the loaded snapshot's stored
        `latent_basis` (authoritative for an expanded generator), then `latent_factors_path`,
        then SeFA of the starting `G_ema` (paper Sec. 3.1, as the official code after resuming).
        Rank 0's basis is broadcast so every rank uses the same one. The frozen source synthesis
        is a copy of `G.synthesis` as loaded (a continued run restores the original source from
        its snapshot's loss state); None when both recon lambdas are 0.

        The snapshot's stored theta of parameterised tasks (`parameterized_domains`) is passed on,
        so those domains continue from it.

        Returns:
            dict(latent_basis=[w_dim, w_dim] float32 CPU tensor, G_synthesis_frozen=module or None,
            parameterized_domains=stored entries or None).
        """
        w_dim = int(G_ema.w_dim)
        stored = snapshot.get('latent_basis') if isinstance(snapshot, dict) else None
        basis, _note = latent_basis_lib.resolve_latent_basis(G_ema, w_dim, snapshot_basis=stored,
                                                            latent_factors_path=loss_kwargs.get('latent_factors_path'))
        basis = _same_on_every_rank(basis.to(torch.float32).cpu().contiguous())
        recon = [loss_kwargs.get(name, default) for name, default in (
            ('lambda_recon_l2', constants.LAMBDA_RECON_L2), ('lambda_recon_lpips', constants.LAMBDA_RECON_LPIPS))]
        frozen = copy.deepcopy(G.synthesis).eval().requires_grad_(False) if any(float(v) > 0 for v in recon) else None
        stored_theta = snapshot.get(THETA_SNAPSHOT_KEY) if isinstance(snapshot, dict) else None
        return dict(latent_basis=basis, G_synthesis_frozen=frozen, parameterized_domains=stored_theta)

    # --- interface with the loop -------------------------------------------------------------

    def get_phases(self, G_reg_interval, D_reg_interval):
        do_expand = (self.lambda_expand > 0 and len(self.tasks) > 0) or self.G_synthesis_frozen is not None
        do_src = self.lambda_src > 0
        if G_reg_interval is None or G_reg_interval == 0:
            phases = [Phase('G_all', 'G', 1)] if (do_expand or do_src) else []
        else:
            phases = [Phase('G_expand_and_recon', 'G', 1)] if do_expand else []
            if do_src:
                phases.append(Phase('G_adv', 'G', 1))
                if self.gan.pl_weight > 0:
                    phases.append(Phase('G_reg', 'G', int(G_reg_interval)))
        if do_src:
            if D_reg_interval is None or D_reg_interval == 0:
                phases.append(Phase('D_all', 'D', 1))
            else:
                phases.append(Phase('D_adv', 'D', 1))
                if self.gan.r1_gamma > 0:
                    phases.append(Phase('D_reg', 'D', int(D_reg_interval)))
        return phases

    def trainable_params(self, name, module):
        # Only the synthesis network adapts; the mapping (and so W) stays the source's. The theta
        # of parameterised tasks rides with G's optimizer (theta_domains.py says why).
        if name == 'G':
            return list(self.G_synthesis.parameters()) + list(self.theta_domains.parameters())
        return list(module.parameters())

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        if phase not in ('G_expand_and_recon', *GAN_PHASES):
            raise ValueError(f"DomainExpansionLoss: unknown phase '{phase}'")
        if phase in ('G_expand_and_recon', 'G_all'):
            self.expand_and_recon(gen_z, gen_c, gain)
        if phase in GAN_PHASES and self.lambda_src > 0:
            if phase.startswith('D') and real_img is None:
                raise ValueError(f"phase '{phase}' needs real images: pass --data, or set --lambda_src 0")
            # Eq. 5: StyleGAN2's own phase, on base-subspace fakes (path length: ordinary mapping).
            self.gan.accumulate_gradients(GAN_PHASES[phase], real_img, real_c, gen_z, gen_c,
                                          gain * self.lambda_src, cur_nimg)

    def state_dict(self):
        return dict(gan=self.gan.state_dict())

    def shared_state_dict(self):
        # The same on every rank, so stored once per snapshot: the basis (checked on resume) and
        # the replay target, the *source* network, so a resumed run aligns to the same one.
        state = dict(latent_basis=self.subspaces.basis.detach().cpu().clone())
        if self.G_synthesis_frozen is not None:
            state['frozen_synthesis'] = {k: v.detach().cpu().clone()
                                         for k, v in self.G_synthesis_frozen.state_dict().items()}
        return state

    def load_shared_state_dict(self, state):
        unknown = set(state) - {'latent_basis', 'frozen_synthesis'}
        if unknown:
            raise ValueError(f'DomainExpansionLoss: unexpected shared loss state keys {sorted(unknown)}')
        if 'latent_basis' in state and not torch.equal(state['latent_basis'].cpu(), self.subspaces.basis.cpu()):
            raise ValueError('the resumed run used a different latent basis than this one resolves; '
                             'resume with the same --latent_factors_path / snapshot')
        if self.G_synthesis_frozen is not None and 'frozen_synthesis' in state:
            self.G_synthesis_frozen.load_state_dict(state['frozen_synthesis'])

    def load_state_dict(self, state):
        unknown = set(state) - {'gan', 'latent_basis', 'frozen_synthesis'}
        if unknown:
            raise ValueError(f'DomainExpansionLoss: unexpected loss state keys {sorted(unknown)}')
        self.gan.load_state_dict(state.get('gan', {}))
        # Snapshots written before the shared state existed kept these per rank.
        self.load_shared_state_dict({k: v for k, v in state.items() if k in ('latent_basis', 'frozen_synthesis')})

    def snapshot_extras(self):
        # Official key names and types (spec section 1.1).
        extras = dict(expansion_cfg=self.config.to_dict(),
                      latent_basis=self.subspaces.basis.detach().cpu().clone(),
                      repurposed_dims=torch.tensor(self.config.repurposed_dims, dtype=torch.int32),
                      subspace_distance=float(self.subspaces.subspace_distance))
        if len(self.theta_domains) > 0:  # Ours (issue 14); absent otherwise, as in official snapshots.
            extras[THETA_SNAPSHOT_KEY] = self.theta_domains.snapshot_entries()
        return extras

    def on_snapshot(self, G_ema, run_dir, label):
        """The labelled aligned grid (base row, one row per domain) and each domain's own error."""
        import os
        cfg_path = os.path.join(run_dir, 'expansion_cfg.json')
        if not os.path.exists(cfg_path):
            self.config.save(cfg_path)
        return evaluation.snapshot_report(G_ema, self.subspaces, self.tasks, os.path.join(run_dir, f'expansion{label}.png'),
                                          domains=self.domains)

    # --- the expansion phase ------------------------------------------------------------------

    def sample_latents(self, gen_z, gen_c):
        """Give every sample a uniformly chosen task and draw its latent from that task.

        Returns `(w [n, w_dim], task_index [n], groups)`, where `groups` lists, per task present,
        `(task_k, positions, context)` with `positions` the sample indices it owns.
        """
        n = gen_z.shape[0]
        if not self.tasks:  # an empty config ({}): replay alignment alone, on the loop's latents
            return self.G_mapping(gen_z, gen_c)[:, 0], None, []
        task_index = torch.randint(len(self.tasks), [n], device=self.device)
        w = torch.empty([n, self.G_mapping.w_dim], device=self.device)
        z_rows, z_positions, groups = [], [], []
        for k in torch.unique(task_index).tolist():
            positions = (task_index == k).nonzero()[:, 0]
            batch = self.tasks[k].sample(len(positions), self.device)
            groups.append((k, positions, batch.context))
            if batch.z is not None:
                z_rows.append(batch.z.to(self.device))
                z_positions.append(positions)
            else:
                w[positions] = batch.w.to(self.device, torch.float32)
        if z_rows:
            # One mapping call for every z-based sample, as one batch (w_avg tracks its mean).
            positions = torch.cat(z_positions)
            w[positions] = self.G_mapping(torch.cat(z_rows), gen_c[positions])[:, 0]
        return w, task_index, groups

    def broadcast(self, w):
        """W `[n, w_dim]` -> W+ `[n, num_ws, w_dim]` (every layer gets the same latent)."""
        return broadcast_ws(w, self.num_ws)

    def expand_and_recon(self, gen_z, gen_c, gain):
        """Eq. 4 (task losses on repurposed subspaces) + Eq. 6 (replay alignment on the base one)."""
        n = gen_z.shape[0]
        w, task_index, groups = self.sample_latents(gen_z, gen_c)
        base_w = self.subspaces.project_base(w, self.G_mapping.w_avg)            # Eq. 1
        rng_state = misc.rng_state(self.device) if self.replay_noise == 'shared' else None
        base_img = self.G_synthesis(self.broadcast(base_w), noise_mode='random')
        total = base_img.new_zeros([])

        if self.lambda_expand > 0 and self.tasks:
            # Eq. 2-3 (theta tasks: theta on the base latent instead)
            edit_img = self.domains.render_training(self.G_synthesis, base_w, task_index, noise_mode='random')
            expand = base_img.new_zeros([])
            by_type = {}
            for k, positions, context in groups:  # each task type's loss runs once on its samples
                by_type.setdefault(type(self.tasks[k]), []).append((k, positions, context))
            for task_type, members in by_type.items():
                items = [(self.tasks[k], context, base_img[positions].detach(), edit_img[positions])
                         for k, positions, context in members]
                for (k, _, _), errors in zip(members, task_type.batched_errors(items)):   # [n_k] each
                    training_stats.report(f'Loss/domain/{self.tasks[k].name}', errors)
                    expand = expand + errors.sum()
            expand = expand / n                                                   # Eq. 4, mean over the batch
            training_stats.report('Loss/expand', expand)
            total = total + self.lambda_expand * expand

        if self.G_synthesis_frozen is not None:
            with torch.no_grad():
                if rng_state is not None:
                    misc.set_rng_state(self.device, rng_state)  # same noise draws as base_img
                target = self.G_synthesis_frozen(self.broadcast(base_w.detach()), noise_mode='random')
            if self.lambda_recon_l2 > 0:
                l2 = F.mse_loss(base_img, target)                                  # Eq. 6, L2 term
                training_stats.report('Loss/recon_l2', l2)
                total = total + self.lambda_recon_l2 * l2
            if self.lambda_recon_lpips > 0:
                lp = self.perceptual(base_img, target).mean()                     # Eq. 6, LPIPS term
                training_stats.report('Loss/recon_lpips', lp)
                total = total + self.lambda_recon_lpips * lp
        training_stats.report('Loss/G/expand_and_recon', total)
        total.mul(gain).backward()

    # --- the source GAN loss on the base subspace (Eq. 5) -------------------------------------

    def base_fakes(self, gen_z, gen_c):
        """Fakes from base-subspace latents (what the adversarial phases see)."""
        return self.gan.fake_images(gen_z, gen_c)


# The expansion schedule's GAN phases (spec section 8) and the StyleGAN2Loss phase each one runs.
GAN_PHASES = {'G_adv': 'Gmain', 'G_reg': 'Greg', 'G_all': 'Gboth', 'D_adv': 'Dmain', 'D_reg': 'Dreg', 'D_all': 'Dboth'}


class BaseSubspaceFakes:
    """The fake-image function of the expansion's adversarial phases (Eq. 5): `w = mapping(z, c)`,
    projected onto the base subspace when `subspaces` is given (Eq. 1, mean = w_avg), broadcast
    to every layer, no style mixing."""

    def __init__(self, G_mapping, G_synthesis, subspaces: LatentSubspaces | None):
        self.G_mapping = G_mapping
        self.G_synthesis = G_synthesis
        self.subspaces = subspaces

    def __call__(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        w = self.G_mapping(z, c)[:, 0]
        if self.subspaces is not None:
            w = self.subspaces.project_base(w, self.G_mapping.w_avg)             # Eq. 1
        return self.G_synthesis(broadcast_ws(w, self.G_synthesis.num_ws))


# ---------------------------------------------------------------------------------------------


def _non_negative(name: str, value) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f'--{name} must be a finite number >= 0, got {value}')
    return value


def _same_on_every_rank(basis: torch.Tensor) -> torch.Tensor:
    """Rank 0's basis on every rank (a collective when torch.distributed is initialised)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        device = 'cuda' if torch.distributed.get_backend() == 'nccl' else 'cpu'
        shared = basis.to(device)
        torch.distributed.broadcast(shared, src=0)
        basis = shared.cpu()
    return basis
