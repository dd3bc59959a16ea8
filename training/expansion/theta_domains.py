"""Parameter-efficient domains inside an expansion config (issue 14): theta on the base latent.

A task with `"parameterization"` (config.py) repurposes no direction of W. Its domain is the
synthesis network with a small parameter vector theta applied (parameterizations.py) to the
*base-subspace* latent, while the other tasks keep their repurposed directions:

    direction task k:  G.synthesis(base(w) + s B_R[:, i])        Eq. 1-2
    theta task k:      G.synthesis_theta_j(base(w))              ours (issue 14), text Eq. 10 / 12

Why this shape (ours): theta starts at the identity, so at step 0 such a domain renders the base
image exactly; its task loss trains theta only (G's weights are detached in that render), so a
parameter-efficient domain cannot pull the shared synthesis network, which the source losses
(Eq. 5-6) and the direction tasks train as before. theta is optimised by G's optimizer (the
same Adam and learning rate; `DomainExpansionLoss.trainable_params`): the loop's gradient
all-reduce, non-finite check and exact resume (optimizer state) then cover it with no second
optimizer. theta has no EMA: renders of `G_ema` use theta as trained.

Snapshots store theta under `SNAPSHOT_KEY`, a list in config order of plain entries
`{'name': task name, 'parameterization': registry name, 'theta': float32 [P]}` (the safe loader
reads them); a run resumed or continued from such a snapshot starts each task of the same name
and parameterisation from its stored theta.
"""

import torch

import dnnlib
from torch_utils import misc
from training.expansion.parameterizations import PARAMETERIZATIONS, Parameterization, get_parameterization
from training.expansion.render import broadcast_ws, render

SNAPSHOT_KEY = 'parameterized_domains'

#----------------------------------------------------------------------------

class ThetaDomainsError(dnnlib.util.UserError, ValueError):
    """Stored theta entries that do not fit the config or the generator."""

def check_snapshot_entries(entries, source: str = 'snapshot') -> list:
    """The stored `parameterized_domains` value as a checked list of entries (see the module
    docstring); None = none stored. ThetaDomainsError (one line) for anything else."""
    if entries is None:
        return []
    where = f'{source}: {SNAPSHOT_KEY}'
    if not isinstance(entries, (list, tuple)):
        raise ThetaDomainsError(f'{where} must be a list of entries, got {type(entries).__name__}')
    checked, names = [], set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {'name', 'parameterization', 'theta'}:
            raise ThetaDomainsError(f"{where}[{index}] must be a dict with keys name, parameterization, theta")
        name, kind, theta = entry['name'], entry['parameterization'], entry['theta']
        if not isinstance(name, str) or name in names:
            raise ThetaDomainsError(f'{where}[{index}].name must be a task name used once, got {name!r}')
        if kind not in PARAMETERIZATIONS:
            raise ThetaDomainsError(f'{where}[{index}].parameterization {kind!r} is not one of '
                                    f'{", ".join(PARAMETERIZATIONS)}')
        if not isinstance(theta, torch.Tensor) or theta.ndim != 1 or not theta.is_floating_point():
            raise ThetaDomainsError(f'{where}[{index}].theta must be a 1-D float tensor')
        if not bool(torch.isfinite(theta).all()):
            raise ThetaDomainsError(f'{where}[{index}].theta ({name}) holds non-finite values')
        names.add(name)
        checked.append(dict(name=name, parameterization=kind, theta=theta.detach().to(torch.float32)))
    return checked

#----------------------------------------------------------------------------

class ThetaDomains(torch.nn.Module):
    """One trainable theta `[P_j]` per parameterised task j, and how to render with it."""

    def __init__(self,
        G_synthesis,            # The synthesis network theta's sizes are taken from.
        names,                  # [J] task names, in config order.
        parameterizations,      # [J] registry names (PARAMETERIZATIONS).
        stored = None,          # Entries of a starting snapshot (check_snapshot_entries); None = all identity.
        source = 'snapshot',    # Where `stored` came from, for messages.
    ):
        super().__init__()
        self.names = [str(name) for name in names]
        self.kinds = [str(kind) for kind in parameterizations]
        by_name = {entry['name']: entry for entry in check_snapshot_entries(stored, source)}
        thetas = []
        for name, kind in zip(self.names, self.kinds):
            theta = get_parameterization(kind, G_synthesis, key=f'task {name!r}: parameterization').identity()
            entry = by_name.get(name)
            if entry is not None and entry['parameterization'] == kind:
                if entry['theta'].shape != theta.shape:
                    raise ThetaDomainsError(f'{source}: {SNAPSHOT_KEY} theta of {name!r} has '
                                            f'{entry["theta"].numel()} values, this generator needs {theta.numel()} '
                                            f'for {kind}; start from another snapshot')
                theta = entry['theta'].clone()
            thetas.append(torch.nn.Parameter(theta))
        self.thetas = torch.nn.ParameterList(thetas)

    def __len__(self) -> int:
        return len(self.names)

    def extra_repr(self) -> str:
        return ', '.join(f'{name!r}: {kind} [{theta.numel()}]'
                         for name, kind, theta in zip(self.names, self.kinds, self.thetas))

    def parameterization(self, j: int, G_synthesis) -> Parameterization:
        """Domain j's parameterisation bound to `G_synthesis` (cheap: it only indexes layers)."""
        return get_parameterization(self.kinds[j], G_synthesis)

    def render_training(self, G_synthesis, ws_base: torch.Tensor, j: int, noise_mode: str = 'random') -> torch.Tensor:
        """Images `[N, C, H, W]` of base latents W+ `[N, num_ws, w_dim]` in domain j; differentiable
        in theta only (G's weights enter detached: this domain's loss never moves them)."""
        misc.assert_shape(ws_base, [None, G_synthesis.num_ws, None])
        detached = {name: param.detach() for name, param in G_synthesis.named_parameters()}
        with self.parameterization(j, G_synthesis).applied(self.thetas[j]):
            return torch.func.functional_call(G_synthesis, detached, (ws_base,), dict(noise_mode=noise_mode))

    @torch.no_grad()
    def render(self, G_synthesis, w_base: torch.Tensor, j: int, noise_mode: str = 'const',
               strength: float = 1.0) -> torch.Tensor:
        """Images `[N, C, H, W]` of base latents W `[N, w_dim]` or W+ in domain j (chunked, no grad).

        `strength` walks theta on the line from identity: theta_id + strength * (theta_j - theta_id),
        so 0 renders the source, 1 the domain (the traversal of a parameterised domain).
        """
        parameterization = self.parameterization(j, G_synthesis)
        theta = self.thetas[j].detach()
        if strength != 1.0:
            identity = parameterization.identity(theta.device)
            theta = identity + float(strength) * (theta - identity)
        with parameterization.applied(theta):
            return render(G_synthesis, w_base, noise_mode)

    def snapshot_entries(self) -> list:
        """The `parameterized_domains` snapshot value: plain dicts with CPU float32 theta."""
        return [dict(name=name, parameterization=kind, theta=theta.detach().to('cpu', torch.float32).clone())
                for name, kind, theta in zip(self.names, self.kinds, self.thetas)]

#----------------------------------------------------------------------------

class ExpansionDomains:
    """Every task's domain, in config order: a repurposed subspace (Eq. 2) or theta on the base latent."""

    def __init__(self,
        subspaces,              # LatentSubspaces: the base subspace and the repurposed directions.
        slots,                  # Per task: ('direction', i) or ('theta', j) (ExpansionConfig.domain_slots).
        theta_domains = None,   # ThetaDomains holding every j named in `slots`; None = no theta domains.
    ):
        self.subspaces = subspaces
        self.slots = [(str(kind), int(index)) for kind, index in slots]
        self.theta_domains = theta_domains
        for kind, index in self.slots:
            limit = subspaces.num_repurposed if kind == 'direction' else len(theta_domains or ())
            assert kind in ('direction', 'theta') and 0 <= index < limit, f'slot {(kind, index)} has no domain'

    @classmethod
    def directions_only(cls, subspaces) -> 'ExpansionDomains':
        """Task k = repurposed direction k (configs without parameterised tasks)."""
        return cls(subspaces, [('direction', i) for i in range(subspaces.num_repurposed)])

    @property
    def num_domains(self) -> int:
        return len(self.slots)

    @property
    def has_theta(self) -> bool:
        return any(kind == 'theta' for kind, _ in self.slots)

    def render(self, G_synthesis, base_w: torch.Tensor, k: int, noise_mode: str = 'const') -> torch.Tensor:
        """Images `[N, C, H, W]` of base-subspace latents W `[N, w_dim]` in task k's domain (no grad)."""
        kind, index = self.slots[k]
        if kind == 'theta':
            return self.theta_domains.render(G_synthesis, base_w, index, noise_mode)
        return render(G_synthesis, self.subspaces.edit(base_w, index), noise_mode)                # Eq. 2

    def render_training(self, G_synthesis, base_w: torch.Tensor, task_index: torch.Tensor,
                        noise_mode: str = 'random') -> torch.Tensor:
        """Differentiable images `[n, C, H, W]`, sample i in the domain of task `task_index[i]`.

        Direction samples share one render of their edited latents (Eq. 2-3); each theta task
        present gets one render of its base latents. Without theta tasks this is exactly the
        single render of `subspaces.edit(base_w, task_index)`.
        """
        misc.assert_shape(base_w, [task_index.shape[0], self.subspaces.w_dim])
        num_ws = G_synthesis.num_ws
        if not self.has_theta:
            return G_synthesis(broadcast_ws(self.subspaces.edit(base_w, task_index), num_ws), noise_mode=noise_mode)
        kinds = [kind for kind, _ in self.slots]
        index_of = torch.tensor([index for _, index in self.slots], device=task_index.device)
        is_theta = torch.tensor([kind == 'theta' for kind in kinds], device=task_index.device)[task_index]
        parts, order = [], []
        positions = (~is_theta).nonzero()[:, 0]
        if positions.numel() > 0:
            edit_w = self.subspaces.edit(base_w[positions], index_of[task_index[positions]])      # Eq. 2-3
            parts.append(G_synthesis(broadcast_ws(edit_w, num_ws), noise_mode=noise_mode))
            order.append(positions)
        for k in torch.unique(task_index[is_theta]).tolist():
            positions = (task_index == k).nonzero()[:, 0]
            parts.append(self.theta_domains.render_training(G_synthesis, broadcast_ws(base_w[positions], num_ws),
                                                            self.slots[k][1], noise_mode))
            order.append(positions)
        return torch.cat(parts)[torch.argsort(torch.cat(order))]

#----------------------------------------------------------------------------
