"""The generator behind the viewer: request parsing, rendering, and the command line of each image.

A `ViewerModel` holds one generator: plain (`G_ema` of any snapshot) or expanded (an
`ExpandedGenerator`: the base subspace plus one repurposed subspace per domain). Renders run
under one lock (one render at a time per process), and the base latent of each (seed,
truncation) stays in a small cache, so a slider move costs one synthesis pass. A photo
projection (one at a time, see jobs.py) optimises on its own copy of the synthesis network and
reads the shared networks only without gradients, so sliders stay live while it runs.

Rendering follows generate_aligned.py (spec section 8): z = RandomState(seed).randn(1, z_dim),
W+ from `G_ema.mapping` with truncation, the base-subspace projection with mean `w_avg` (Eq. 1),
then a step of `strength * subspace_distance` along each chosen domain's direction (Eq. 2;
several domains at once compose them, paper Sec. 4.4, as `traverse.py --compose` does), and
`noise_mode='const'`. Strength 0 is the base subspace, 1 the domain as trained.
"""

import collections
import dataclasses
import math
import re
import shlex
import threading

import numpy as np
import torch

import dnnlib
from torch_utils import image_utils, misc
from training import cli_helpers, projection
from training.expansion.expanded_generator import EXPANSION_KEYS, ExpandedGenerator

MAX_SEED            = 2 ** 32 - 1   # numpy RandomState seeds.
TRUNC_RANGE         = (0.0, 2.0)    # Accepted truncation psi (1 = none).
STRENGTH_RANGE      = (0.0, 1.5)    # Domain slider: 0 = base subspace, 1 = the domain as trained.
LATENT_CACHE_SIZE   = 256           # Base latents kept, one per (seed, truncation).
MAX_PHOTOS          = 8             # Projected photos kept (oldest dropped first).
PROJECTION_SEED     = 303           # projector.py's default --seed, so its command line reproduces ours.
QUERY_KEYS          = ('seed', 'trunc', 'domains', 'photo')

#----------------------------------------------------------------------------

class RequestError(dnnlib.util.UserError):
    """A bad request; the server answers `http_status` with this one-line message as JSON."""

    def __init__(self, message: str, http_status: int = 400):
        super().__init__(message)
        self.http_status = http_status

@dataclasses.dataclass(frozen=True)
class RenderRequest:
    """One image to render: a seed (or a projected photo) and the domain strengths."""
    seed:      int | None   # z seed; None for a projected photo.
    trunc:     float        # Truncation psi (1 = none); photos ignore it.
    strengths: tuple = ()   # ((domain index k, strength), ...) in request order; 1 = the domain as trained.
    photo:     str = None   # Id of a projected photo instead of a seed.

#----------------------------------------------------------------------------

def _parse_number(text: str, name: str, bounds: tuple) -> float:
    """A finite float within `bounds` (inclusive); `RequestError` naming `name` otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise RequestError(f"{name}: '{text}' is not a number") from None
    if not math.isfinite(value) or not bounds[0] <= value <= bounds[1]:
        raise RequestError(f'{name}: {text} is out of range; use a number from {bounds[0]:g} to {bounds[1]:g}')
    return value

def parse_seed(text: str) -> int:
    """A seed 0 <= seed <= 2**32 - 1 (numpy RandomState)."""
    if re.fullmatch(r'\d{1,20}', text.strip()) is None:
        raise RequestError(f"seed: '{text}' is not a non-negative integer; use 0 to {MAX_SEED}")
    seed = int(text)
    if seed > MAX_SEED:
        raise RequestError(f'seed: {seed} is out of range; use 0 to {MAX_SEED}')
    return seed

def _single_values(query: dict) -> dict:
    """`parse_qs` output -> {key: value}; unknown or repeated keys are `RequestError`s."""
    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown:
        raise RequestError(f"unknown parameter '{unknown[0]}'; valid: {', '.join(QUERY_KEYS)}")
    repeated = [key for key, values in query.items() if len(values) != 1]
    if repeated:
        raise RequestError(f"parameter '{repeated[0]}' is given {len(query[repeated[0]])} times; give it once")
    return {key: values[0] for key, values in query.items()}

#----------------------------------------------------------------------------

class ViewerModel:
    """A plain or expanded generator that renders seeds and projected photos, one at a time."""

    def __init__(self,
        G,                          # G_ema (training.networks.Generator); its mapping and synthesis are used.
        eg          = None,         # ExpandedGenerator wrapping G; None = a plain generator (no domains).
        c           = None,         # Label [1, c_dim]; None = zeros (unconditional networks).
        network_pkl = 'network.pkl',# The --network text, for the command lines shown beside each image.
        metric      = 'l2',         # Photo projection distance: 'l2' (pixel MSE) or 'lpips' (LPIPS-VGG).
        distance    = None,         # Its callable `(synth, target) -> [N]`; None = pixel MSE.
        class_idx   = None,         # Class of a conditional network, repeated in the command lines.
        allow_task_import = False,  # The user's --allow-task-import, repeated in the expanded tools' command lines.
    ):
        assert eg is None or eg.G is G, 'eg must wrap G'
        self.G = G.eval().requires_grad_(False)
        self.eg = eg
        self.device = next(G.synthesis.parameters()).device
        self.c = torch.zeros([1, G.c_dim], device=self.device) if c is None else c.to(self.device)
        misc.assert_shape(self.c, [1, G.c_dim])
        self.network_pkl = network_pkl
        self.metric = metric
        self.distance = distance
        self.class_idx = class_idx
        self.allow_task_import = bool(allow_task_import)
        self._lock = threading.Lock()                       # One render at a time; guards the two caches.
        self._latents = collections.OrderedDict()           # (seed, trunc) -> base W+ [1, num_ws, w_dim], LRU.
        self._photos = collections.OrderedDict()            # photo id -> (W+ [1, num_ws, w_dim], command line).

    def __repr__(self):
        what = repr(self.eg) if self.eg is not None else 'plain generator'
        return f'ViewerModel({self.network_pkl!r}, {what}, resolution={self.resolution})'

    # --- facts ------------------------------------------------------------------------------

    @property
    def resolution(self) -> int:
        return int(self.G.img_resolution)

    @property
    def expanded(self) -> bool:
        return self.eg is not None

    def domains(self) -> list:
        """[{'name', 'dimension'}] in task order; [] for a plain generator."""
        if self.eg is None:
            return []
        return [dict(name=name, dimension=dim) for name, dim in zip(self.eg.names, self.eg.dims)]

    def info(self) -> dict:
        """What the page needs beyond /api/domains."""
        return dict(network=self.network_pkl, expanded=self.expanded, resolution=self.resolution,
            channels=int(self.G.img_channels), subspace_distance=self.eg.subspace_distance if self.eg else None,
            strength_range=list(STRENGTH_RANGE), trunc_range=list(TRUNC_RANGE), max_seed=MAX_SEED,
            projection_metric=self.metric, names_note=self.eg.names_note if self.eg else None)

    # --- requests ---------------------------------------------------------------------------

    def parse_domains(self, text: str) -> tuple:
        """'NAME:STRENGTH,NAME:STRENGTH' -> ((k, strength), ...); names may also be dims ('31', 'dim031')."""
        if text.strip() == '':
            return ()
        if self.eg is None:
            raise RequestError('domains: this is a plain generator without domains; leave domains out')
        strengths = []
        for part in text.split(','):
            name, sep, value = part.rpartition(':')
            if not sep or not name.strip():
                raise RequestError(f"domains: '{part}' is not NAME:STRENGTH, e.g. "
                    f"'{self.eg.names[0]}:1'")
            try:
                k = self.eg.domain_index(name.strip(), 'domains')
            except dnnlib.util.UserError as err:
                raise RequestError(str(err)) from None
            if k in [seen for seen, _ in strengths]:
                raise RequestError(f"domains: '{name.strip()}' is listed twice")
            strengths.append((k, _parse_number(value.strip(), f"domains: strength of '{name.strip()}'", STRENGTH_RANGE)))
        return tuple(strengths)

    def parse_request(self, query: dict) -> RenderRequest:
        """A `RenderRequest` from `urllib.parse.parse_qs` output (keep_blank_values=True)."""
        values = _single_values(query)
        strengths = self.parse_domains(values.get('domains', ''))
        trunc = _parse_number(values['trunc'], 'trunc', TRUNC_RANGE) if 'trunc' in values else 1.0
        if 'photo' in values:
            if 'seed' in values:
                raise RequestError('give either seed or photo, not both')
            with self._lock:
                self._photo(values['photo'])                                # unknown ids fail here
            return RenderRequest(seed=None, trunc=trunc, strengths=strengths, photo=values['photo'])
        if 'seed' not in values:
            raise RequestError(f'seed: missing; add seed=N with 0 <= N <= {MAX_SEED}')
        return RenderRequest(seed=parse_seed(values['seed']), trunc=trunc, strengths=strengths)

    # --- rendering --------------------------------------------------------------------------

    def _map_seed(self, seed: int, trunc: float) -> torch.Tensor:
        """Base W+ [1, num_ws, w_dim] of a seed: mapped, truncated, and (expanded) projected (Eq. 1)."""
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, self.G.z_dim))    # the stylegan convention
        if self.eg is None:
            return self.G.mapping(z.to(self.device, torch.float32), self.c, truncation_psi=trunc,
                skip_w_avg_update=True)
        return self.eg.project_base(self.eg.map(z, self.c, trunc))                   # Eq. 1

    def _photo(self, photo_id: str) -> tuple:
        """(W+ latent, command line) of a kept photo; call under the lock."""
        if photo_id not in self._photos:
            raise RequestError(f"photo: '{photo_id}' is not a projected photo of this server "
                f'(it keeps the last {MAX_PHOTOS}); upload it again')
        return self._photos[photo_id]

    def _base_latent(self, request: RenderRequest) -> torch.Tensor:
        if request.photo is not None:
            return self._photo(request.photo)[0]
        key = (request.seed, request.trunc)
        if key in self._latents:
            self._latents.move_to_end(key)
        else:
            self._latents[key] = self._map_seed(request.seed, request.trunc)
            while len(self._latents) > LATENT_CACHE_SIZE:
                self._latents.popitem(last=False)
        return self._latents[key]

    @torch.no_grad()
    def render(self, request: RenderRequest) -> np.ndarray:
        """uint8 [H, W, C] image of the request (the stylegan conversion `x * 127.5 + 128`)."""
        with self._lock:
            ws = self._base_latent(request)                                     # [1, num_ws, w_dim]
            if request.strengths:
                weights = [0.0] * self.eg.num_domains
                for k, strength in request.strengths:
                    weights[k] = strength * self.eg.subspace_distance           # Eq. 2: step s along B_R[:, k]
                ws = self.eg.subspaces.compose(ws, weights)                     # Sec. 4.4: steps add up
            if self.eg is not None:
                images = self.eg.synthesize(ws)                                 # as generate_aligned.py renders
            else:
                images = self.G.synthesis(ws, noise_mode='const')               # as generate.py renders
        misc.assert_shape(images, [1, self.G.img_channels, self.resolution, self.resolution])
        return image_utils.to_uint8(images)[0]

    # --- photos -----------------------------------------------------------------------------

    def project_photo(self, photo_id: str, target_uint8: np.ndarray, num_steps: int, filename: str = 'photo.png',
            progress=None) -> None:
        """Project a photo (uint8 [C, H, W] at G's resolution) into W and keep it as `photo_id`.

        Uses training/projection.py as `projector.py --resize [--expanded]` does (W latent, seed
        `PROJECTION_SEED`); for an expanded generator the optimisation stays in the base subspace
        (Eq. 1), so strength 0 shows the reconstruction. `progress(step, num_steps, dist)` after each step.
        """
        result = projection.project(self.G, torch.from_numpy(target_uint8), num_steps=num_steps,
            distance=self.distance, c=self.c, seed=PROJECTION_SEED,
            subspaces=self.eg.subspaces if self.eg else None, base_mean=self.eg.w_avg if self.eg else None,
            progress=progress)                                                  # outside the render lock
        ws = result.latent.to(self.device).reshape(1, 1, -1).repeat(1, self.G.num_ws, 1)      # W -> W+
        with self._lock:
            self._photos[photo_id] = (ws, self._projector_command(filename, num_steps))
            while len(self._photos) > MAX_PHOTOS:
                self._photos.popitem(last=False)

    # --- command lines ----------------------------------------------------------------------

    def _common_flags(self) -> list:
        flags = ['--network', self.network_pkl]
        flags += ['--class', str(self.class_idx)] if self.class_idx is not None else []
        return flags + (['--allow-task-import'] if self.allow_task_import and self.expanded else [])

    def _projector_command(self, filename: str, num_steps: int) -> str:
        args = ['python', 'projector.py', *self._common_flags(), '--target', filename, '--resize',
            '--num-steps', str(num_steps), '--metric', self.metric, '--outdir', 'out']
        args += ['--expanded'] if self.expanded else []
        return shlex.join(args) + '  # the latent: out/<name>.pt; strength 1 of each domain: out/<name>/'

    def command_line(self, request: RenderRequest) -> str:
        """The command of our other tools that writes this image (and where it lands)."""
        if request.photo is not None:
            with self._lock:
                return self._photo(request.photo)[1]
        seed_flags = ['--seeds', str(request.seed), '--trunc', repr(request.trunc)]
        if self.eg is None:
            args = ['python', 'generate.py', *self._common_flags(), *seed_flags, '--outdir', 'out']
            return shlex.join(args) + f'  # out/seed{request.seed:04d}.png'
        active = [(k, strength) for k, strength in request.strengths if strength != 0]
        if not active:
            args = ['python', 'generate_aligned.py', *self._common_flags(), *seed_flags, '--outdir', 'out']
            return shlex.join(args) + f'  # out/base/seed{request.seed:04d}.png'
        if len(active) == 1 and active[0][1] == 1:
            k = active[0][0]
            args = ['python', 'generate_aligned.py', *self._common_flags(), *seed_flags,
                '--domains', str(self.eg.dims[k]), '--outdir', 'out']
            return shlex.join(args) + f'  # out/{self.eg.folder_name(k)}/seed{request.seed:04d}.png'
        mix = ','.join(f'{self.eg.dims[k]}={strength * self.eg.subspace_distance:.9g}' for k, strength in active)
        args = ['python', 'traverse.py', *self._common_flags(), *seed_flags, '--compose', mix, '--outdir', 'out']
        return shlex.join(args) + f'  # out/compose/seed{request.seed:04d}.png'

#----------------------------------------------------------------------------

def make_label(G, class_idx, device) -> torch.Tensor:
    """Label [1, c_dim]: one-hot for a conditional network; `UserError` naming --class otherwise."""
    c = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim == 0:
        if class_idx is not None:
            raise dnnlib.util.UserError(f'--class {class_idx}: the network is unconditional; leave --class out')
        return c
    if class_idx is None or not 0 <= class_idx < G.c_dim:
        raise dnnlib.util.UserError(f'--class: the network is conditional with {G.c_dim} classes; '
            f'pass --class N with 0 <= N < {G.c_dim}')
    c[:, class_idx] = 1
    return c

def make_projection_distance(metric: str, device) -> object:
    """The projection distance for `metric`; `UserError` naming --metric when LPIPS is unavailable."""
    if metric not in projection.METRICS:
        raise dnnlib.util.UserError(f"--metric {metric}: choose one of {', '.join(projection.METRICS)}")
    if metric == 'l2':
        return projection.pixel_l2
    from training.expansion.tasks.shared_models import PretrainedWeightsError, SharedModels
    try:
        return projection.make_distance(metric, SharedModels(device))
    except PretrainedWeightsError as err:
        raise dnnlib.util.UserError(f'--metric lpips: {err}; or use --metric l2 (pixel MSE, no download)') from None

def load_viewer_model(network_pkl: str, device: torch.device = torch.device('cpu'), class_idx: int = None,
        metric: str = 'l2', allow_task_import: bool = False) -> ViewerModel:
    """Load a plain or expanded snapshot (path or URL) for the viewer; `UserError`s name the flag.

    `allow_task_import`: import dotted task types named in the snapshot's expansion_cfg, for the
    domain names (the user's --allow-task-import; default: registered task types only).
    """
    if metric not in projection.METRICS:                                # checked before any loading
        raise dnnlib.util.UserError(f"--metric {metric}: choose one of {', '.join(projection.METRICS)}")
    data = cli_helpers.load_network(network_pkl)
    if not isinstance(data.get('G_ema'), torch.nn.Module):
        raise dnnlib.util.UserError(f'--network {network_pkl}: the snapshot has no G_ema network')
    eg = None
    if any(data.get(key) is not None for key in EXPANSION_KEYS):
        eg = ExpandedGenerator.from_snapshot(data, source=f'--network {network_pkl}',
            allow_task_import=allow_task_import).to(device)
    G = eg.G if eg is not None else data['G_ema'].eval().requires_grad_(False).to(device)
    c = make_label(G, class_idx, device)
    distance = make_projection_distance(metric, device)
    return ViewerModel(G, eg, c=c, network_pkl=network_pkl, metric=metric, distance=distance, class_idx=class_idx,
        allow_task_import=allow_task_import)

#----------------------------------------------------------------------------
