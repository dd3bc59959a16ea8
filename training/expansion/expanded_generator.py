"""An expanded generator as stored in a domain-expansion snapshot, ready to render.

`ExpandedGenerator` wraps `G_ema` together with the snapshot's own `latent_basis`,
`repurposed_dims` and `subspace_distance` (never a recomputed basis: its signs decide where the
repurposed subspaces lie, spec section 7) and names each repurposed domain after its task in the
stored `expansion_cfg`. Rendering follows spec section 8 "Generation with an expanded model":
z -> W+ with `G_ema.mapping` (optionally truncated), projection with `mean = G_ema.mapping.w_avg`,
step `subspace_distance`, every image with `noise_mode='const'`.

Parameterised domains (tasks with `"parameterization"`, stored under `parameterized_domains`)
are not directions: they are listed apart (`theta_names`) and render theta applied to the base
latent (`render_theta`); the direction API (dims, traversal, composition) covers directions only.

Used by generate_aligned.py, generate_mystyle.py and traverse.py.
"""

import json
import re

import torch

import dnnlib
from torch_utils import misc
from training import cli_helpers
from training.expansion.config import parse_expansion_config
from training.expansion.render import broadcast_ws, render
from training.expansion.subspaces import LatentSubspaces
from training.expansion.tasks.base import slugify
from training.expansion.theta_domains import SNAPSHOT_KEY as THETA_SNAPSHOT_KEY, ThetaDomains, check_snapshot_entries

EXPANSION_KEYS = ('latent_basis', 'repurposed_dims', 'subspace_distance')

#----------------------------------------------------------------------------

def load_expanded_generator(network_pkl: str, device: torch.device = torch.device('cpu'),
        flag: str = '--network', allow_task_import: bool = False) -> 'ExpandedGenerator':
    """Load a snapshot (path or URL) and wrap it; `UserError` naming `flag` on any problem.
    `allow_task_import`: the user's explicit consent (`--allow-task-import`) to import dotted task
    types named in the snapshot's expansion_cfg; without it they are refused."""
    data = cli_helpers.load_network(network_pkl, flag)
    return ExpandedGenerator.from_snapshot(data, source=f'{flag} {network_pkl}',
                                           allow_task_import=allow_task_import).to(device)

def domain_names(expansion_cfg, repurposed_dims: list, w_dim: int, allow_task_import: bool = False) -> tuple:
    """Task name of every repurposed dim, resolved from the stored config as the training run did.

    Only registered task types resolve; a dotted type raises `TaskImportRefusedError` unless
    `allow_task_import` (the user's `--allow-task-import`).

    Returns:
        `(names, note)`: one name per dim ('dimNNN' where the config gives none) and a one-line
        note saying why names fell back to dimensions (None when every dim has its task name).
    """
    fallback = [f'dim{dim:03d}' for dim in repurposed_dims]
    if expansion_cfg is None:
        return fallback, 'the snapshot has no expansion_cfg; domains are named by dimension'
    try:
        cfg = json.loads(expansion_cfg) if isinstance(expansion_cfg, str) else expansion_cfg
        parsed = parse_expansion_config(cfg, w_dim, check_resources=False, source='snapshot expansion_cfg',
                                        allow_task_import=allow_task_import)
    except (ValueError, TypeError) as err:  # ExpansionConfigError and json errors are ValueErrors.
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        return fallback, f'the snapshot expansion_cfg does not parse ({first_line}); domains are named by dimension'
    by_dim = {task.dimension: task.name for task in parsed.tasks}
    names = [by_dim.get(dim, name) for dim, name in zip(repurposed_dims, fallback)]
    missing = [dim for dim in repurposed_dims if dim not in by_dim]
    note = f'the snapshot expansion_cfg has no task for dim(s) {missing}; those are named by dimension' if missing else None
    return names, note

#----------------------------------------------------------------------------

class ExpandedGenerator:
    """G_ema plus its base and repurposed subspaces; renders aligned, traversed and composed images."""

    def __init__(self,
        G_ema,                      # The snapshot's G_ema (a training.networks.Generator).
        latent_basis,               # [w_dim, w_dim] stored basis, columns are directions.
        repurposed_dims,            # [K] stored repurposed dims, in task order.
        subspace_distance,          # Stored step s along a repurposed direction.
        expansion_cfg = None,       # Stored expansion config (dict or JSON text), for task names; None = 'dimNNN'.
        allow_task_import = False,  # Import dotted task types of expansion_cfg (the user's --allow-task-import).
        parameterized_domains = None,  # Stored theta entries (snapshot key parameterized_domains); None = none.
        source = 'snapshot',        # Where the data came from, for messages.
    ):
        self.G = G_ema.eval().requires_grad_(False)
        if getattr(self.G.mapping, 'w_avg', None) is None:
            raise dnnlib.util.UserError('G_ema.mapping has no w_avg (built with w_avg_beta=None); the projection '
                'needs it as the mean latent (spec section 8)')
        self.subspaces = LatentSubspaces(latent_basis, repurposed_dims, float(subspace_distance))
        if self.subspaces.w_dim != self.G.w_dim:
            raise dnnlib.util.UserError(f'latent_basis is {self.subspaces.w_dim}x{self.subspaces.w_dim} but G_ema has '
                f'w_dim {self.G.w_dim}; the snapshot is inconsistent')
        self.dims = [int(dim) for dim in self.subspaces.repurposed_dims.tolist()]
        self.names, self.names_note = domain_names(expansion_cfg, self.dims, self.G.w_dim, allow_task_import)
        entries = check_snapshot_entries(parameterized_domains, source)
        self.theta_domains = ThetaDomains(self.G.synthesis, [e['name'] for e in entries],
                                          [e['parameterization'] for e in entries], stored=entries, source=source)
        self.theta_domains.requires_grad_(False)

    @classmethod
    def from_snapshot(cls, data: dict, source: str = 'snapshot', allow_task_import: bool = False) -> 'ExpandedGenerator':
        """Wrap a loaded snapshot dict; `UserError` for a plain StyleGAN2 snapshot."""
        missing = [key for key in EXPANSION_KEYS if data.get(key) is None]
        if missing:
            raise dnnlib.util.UserError(f'{source}: a plain StyleGAN2 snapshot (no {", ".join(missing)}), not an '
                f'expanded generator; use generate.py for it, or pass a domain-expansion snapshot')
        if not isinstance(data.get('G_ema'), torch.nn.Module):
            raise dnnlib.util.UserError(f'{source}: the snapshot has no G_ema network')
        try:
            return cls(data['G_ema'], data['latent_basis'], data['repurposed_dims'], data['subspace_distance'],
                data.get('expansion_cfg'), allow_task_import, data.get(THETA_SNAPSHOT_KEY), source)
        except ValueError as err:  # LatentSubspaces rejects a malformed basis or dims.
            raise dnnlib.util.UserError(f'{source}: stored expansion keys are invalid: {err}') from None

    def to(self, device) -> 'ExpandedGenerator':
        self.G = self.G.to(device)
        self.subspaces = self.subspaces.to(device)
        self.theta_domains = self.theta_domains.to(device)
        return self

    def __repr__(self):
        domains = ', '.join(f'{dim}: {name!r}' for dim, name in zip(self.dims, self.names))
        return (f'ExpandedGenerator({self.subspaces.extra_repr()}, domains={{{domains}}}, '
                f'theta_domains={{{self.theta_domains.extra_repr()}}})')

    # --- facts -----------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.subspaces.basis.device

    @property
    def w_avg(self) -> torch.Tensor:
        """The mean the projection uses (spec section 8: G_ema's w_avg), [w_dim]."""
        return self.G.mapping.w_avg

    @property
    def subspace_distance(self) -> float:
        return self.subspaces.subspace_distance

    @property
    def num_domains(self) -> int:
        return len(self.dims)

    @property
    def theta_names(self) -> list:
        """Names of the parameterised domains, in config order."""
        return list(self.theta_domains.names)

    def theta_folder_name(self, j: int) -> str:
        """Output folder of parameterised domain j: 'theta_<task-name-slug>'."""
        return f'theta_{slugify(self.theta_domains.names[j])}'

    def folder_name(self, k: int) -> str:
        """Output folder of domain k: 'dimDDD_<task-name-slug>'."""
        return f'dim{self.dims[k]:03d}_{slugify(self.names[k])}'

    def describe_domains(self) -> str:
        """'31 (watercolor painting), 30 (marble statue)': the valid choices for error messages."""
        return ', '.join(f'{dim} ({name})' for dim, name in zip(self.dims, self.names))

    def domain_index(self, name_or_dim, flag: str = '--domain') -> int:
        """Task index k of a domain given by repurposed dim (int, '31', 'dim031') or task name.

        A dim (31, '31', 'dim031') is tried first; then task names: exact, ignoring case, by slug.
        `UserError` naming `flag` and listing the valid domains when nothing (or more than one
        domain) matches.
        """
        text = str(name_or_dim).strip()
        candidates = []
        match = re.fullmatch(r'(?:dim)?(\d+)', text, flags=re.IGNORECASE)
        if isinstance(name_or_dim, int) or match is not None:
            dim = int(name_or_dim) if isinstance(name_or_dim, int) else int(match.group(1))
            candidates = [k for k, d in enumerate(self.dims) if d == dim]
        for same in (lambda n: n == text, lambda n: n.casefold() == text.casefold(),
                     lambda n: slugify(n) == slugify(text)):
            if candidates:
                break
            candidates = [k for k, name in enumerate(self.names) if same(name)]
        if len(candidates) != 1:
            why = 'matches several domains' if candidates else 'is not a domain of this network'
            raise dnnlib.util.UserError(f"{flag}: '{text}' {why}; valid (dim (name)): {self.describe_domains()}")
        return candidates[0]

    def domain_indices(self, text, flag: str = '--domains') -> list:
        """Comma list of names/dims -> task indices in the given order; None or '' = all domains."""
        if text is None or str(text).strip() == '':
            return list(range(self.num_domains))
        ks = [self.domain_index(part, flag) for part in str(text).split(',')]
        if len(set(ks)) != len(ks):
            raise dnnlib.util.UserError(f'{flag}: a domain is listed twice in {text!r}')
        return ks

    def select_domains(self, text, flag: str = '--domains') -> tuple:
        """Comma list of names/dims -> `(direction indices ks, theta indices js)` in the given
        order; None or '' = every domain of both kinds. A theta domain is named by its task name."""
        if text is None or str(text).strip() == '':
            return list(range(self.num_domains)), list(range(len(self.theta_domains)))
        ks, js = [], []
        for part in (part.strip() for part in str(text).split(',')):
            theta = [j for j, name in enumerate(self.theta_names) if slugify(name) == slugify(part)]
            if theta:
                js.append(theta[0])
            elif self.dims:
                ks.append(self.domain_index(part, flag))
            else:
                raise dnnlib.util.UserError(f"{flag}: '{part}' is not a domain of this network; valid: "
                                            f"{', '.join(self.theta_names)}")
        if len(set(ks)) != len(ks) or len(set(js)) != len(js):
            raise dnnlib.util.UserError(f'{flag}: a domain is listed twice in {text!r}')
        return ks, js

    # --- latents ---------------------------------------------------------------------------

    @torch.no_grad()
    def map(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """z [N, z_dim], c [N, c_dim] -> W+ [N, num_ws, w_dim] (truncated towards w_avg; w_avg untouched)."""
        misc.assert_shape(z, [None, self.G.z_dim])
        return self.G.mapping(z.to(self.device, torch.float32), c.to(self.device), truncation_psi=truncation_psi,
            skip_w_avg_update=True)

    def project_base(self, ws: torch.Tensor) -> torch.Tensor:
        """Eq. 1 with the stored basis and mean = w_avg; W [N, w_dim] or W+ [N, num_ws, w_dim]."""
        return self.subspaces.project_base(ws, self.w_avg)

    def broadcast(self, ws: torch.Tensor) -> torch.Tensor:
        """W [N, w_dim] -> W+ [N, num_ws, w_dim]; W+ passes through."""
        return broadcast_ws(ws, self.G.num_ws)

    # --- rendering (noise_mode='const' throughout, spec section 8) --------------------------

    @torch.no_grad()
    def synthesize(self, ws: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """Images [N, C, H, W] of W or W+ latents, in chunks."""
        return render(self.G.synthesis, ws.to(self.device), batch_size=batch_size)

    @torch.no_grad()
    def render_aligned(self, ws: torch.Tensor, ks: list = None) -> tuple:
        """The same latents on the base subspace and on each requested repurposed subspace.

        Follows the official projection: `base, edits = project(ws, step=s, mean=w_avg)`, then
        renders `base` and `edits[0, k]`.

        Returns:
            `(base_img [N, C, H, W], [edit_img [N, C, H, W] for k in ks])`; ks None = all domains.
        """
        ks = list(range(self.num_domains)) if ks is None else ks
        base, edits = self.subspaces.edits_all(ws.to(self.device), self.w_avg)    # edits [1, K, *ws.shape]
        return self.synthesize(base), [self.synthesize(edits[0, k]) for k in ks]

    @torch.no_grad()
    def render_theta(self, ws: torch.Tensor, j: int, strength: float = 1.0) -> torch.Tensor:
        """Parameterised domain j: its theta (scaled from identity by `strength`, 1 = the domain)
        applied to the base projection of `ws`; images [N, C, H, W]."""
        base = self.project_base(ws.to(self.device))                            # Eq. 1
        return self.theta_domains.render(self.G.synthesis, base, j, strength=strength)

    @torch.no_grad()
    def render_traverse(self, ws: torch.Tensor, k: int, steps) -> torch.Tensor:
        """Walk along domain k's direction from the base projection: images [S, N, C, H, W].

        `steps`: S distances (0 = the base render, `subspace_distance` = the domain, beyond allowed).
        """
        base = self.project_base(ws.to(self.device))                            # Eq. 1
        return torch.stack([self.synthesize(self.subspaces.edit(base, k, float(step))) for step in steps])  # Eq. 2

    @torch.no_grad()
    def render_compose(self, ws: torch.Tensor, weights) -> torch.Tensor:
        """Composition (paper Sec. 4.4): base + sum_k weights[k] * B_R[:, k]; images [N, C, H, W].

        `weights`: [K] distances in task order, or a dict {task index: distance} (others 0).
        """
        if isinstance(weights, dict):
            full = [0.0] * self.num_domains
            for k, value in weights.items():
                full[k] = float(value)
            weights = full
        base = self.project_base(ws.to(self.device))
        return self.synthesize(self.subspaces.compose(base, weights))

#----------------------------------------------------------------------------
