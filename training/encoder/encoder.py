"""The domain encoder: K reference images of a domain -> theta in one forward pass; its snapshot.

Design (ours; the text gives no architecture): a reference is a pair, the domain image and its
source counterpart (the source generator's image of the same content), as in the image-guided
directional loss (text Eq. 3), where the direction is E(reference) - E(its source image). A
backbone embeds each pair, the embeddings are averaged over the K references, and an MLP head
predicts theta - theta_id with its last layer initialised to zero, so an untrained encoder
returns the identity (the source domain). Why pairs: a domain that maps the source distribution
onto itself (a hue rotation of a source whose hues are uniform, as the demo's) cannot be told from
the source by unpaired images; measured on the demo, an encoder of single images reached R^2 0.28
on hue 45 degrees and -0.9 on grayscale from one reference (README).

The CPU backbone summarises an image by feature statistics, in the spirit of BlendGAN's style
encoder (Gram statistics of features, text Sec. II): the colour mean and second moments of the
pixels, and the per-channel mean and standard deviation of two small conv stages. Colour and
texture domains are properties of such statistics, not of where things are in the image.
With CLIP weights, `backbone='clip'` uses the frozen CLIP image tower instead (`ClipPairBackbone`:
E(reference) and the pair's direction E(reference) - E(source), the quantity of Eq. 3); its
weights are never stored in the encoder snapshot, only the CLIP model's name, and loading such a
snapshot loads CLIP (offline: the one-line weights error).

Snapshot: a `torch.save` of plain data (numbers, strings, tensors), read with
`torch.load(weights_only=True)`; the encoder is rebuilt from the stored constructor arguments,
so nothing named in the file is imported or called.
"""

import torch

import dnnlib
from torch_utils import misc

#----------------------------------------------------------------------------

class StatsBackbone(torch.nn.Module):
    """Image `[N, C, H, W]` in [-1, 1] -> feature statistics `[N, out_features]`."""

    def __init__(self,
        img_channels    = 3,    # Input image channels.
        channels        = 32,   # Width of the two conv stages.
    ):
        super().__init__()
        self.img_channels = img_channels
        self.conv1 = torch.nn.Conv2d(img_channels, channels, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        C = img_channels
        self.out_features = C + C * (C + 1) // 2 + 4 * channels

    def forward(self, x):
        misc.assert_shape(x, [None, self.img_channels, None, None])
        pixels = x.flatten(2)                                                    # [N, C, HW]
        moments = torch.einsum('nip,njp->nij', pixels, pixels) / pixels.shape[2]  # [N, C, C]: E[x x^T]
        rows, cols = torch.triu_indices(self.img_channels, self.img_channels)
        stats = [pixels.mean(dim=2), moments[:, rows, cols]]
        f = x
        for conv in (self.conv1, self.conv2):
            f = torch.nn.functional.leaky_relu(conv(f), 0.2)
            stats += [f.mean(dim=[2, 3]), f.std(dim=[2, 3])]
        return torch.cat(stats, dim=1)

    def extra_repr(self):
        return f'img_channels={self.img_channels}, out_features={self.out_features}'

#----------------------------------------------------------------------------

class ClipPairBackbone(torch.nn.Module):
    """Pairs `[N, 2C, H, W]` (reference channels, then source) -> `[N, 2D]`: E(ref) and E(ref) - E(src)
    of a frozen CLIP image tower E (no gradients: only the head trains)."""

    def __init__(self,
        clip,                   # ClipEncoder (training.expansion.tasks.shared_models): encode_images -> [N, D] unit vectors.
        embed_dim,              # D, the CLIP embedding width.
        img_channels = 3,       # Channels of one image of the pair.
    ):
        super().__init__()
        self.clip = clip        # A plain attribute, not a submodule: its weights stay out of state_dict.
        self.embed_dim = int(embed_dim)
        self.img_channels = int(img_channels)
        self.out_features = 2 * self.embed_dim

    def forward(self, pairs):
        misc.assert_shape(pairs, [None, 2 * self.img_channels, None, None])
        C = self.img_channels
        with torch.no_grad():
            e_ref = self.clip.encode_images(pairs[:, :C].to(self.clip.device))
            e_src = self.clip.encode_images(pairs[:, C:].to(self.clip.device))
        misc.assert_shape(e_ref, [pairs.shape[0], self.embed_dim])
        return torch.cat([e_ref, e_ref - e_src], dim=1).to(pairs.device)

    def extra_repr(self):
        return f'clip={self.clip!r}, embed_dim={self.embed_dim}'

BACKBONES = ('stats', 'clip')

#----------------------------------------------------------------------------

class DomainEncoder(torch.nn.Module):
    """References and their source images `[B, K, C, H, W]` -> theta `[B, P]`
    = theta_id + head(mean_k backbone([ref_k, src_k]))."""

    def __init__(self,
        num_params,             # P, the length of theta of the parameterisation.
        theta_identity,         # theta_id `[P]` (list or tensor): what an untrained encoder returns.
        img_channels    = 3,    # Reference image channels.
        channels        = 32,   # Backbone conv width.
        hidden          = 256,  # MLP head width.
        backbone        = 'stats',  # 'stats' (trained with the head) or 'clip' (frozen CLIP image tower).
        clip_model      = None, # backbone 'clip': the CLIP model's config name (e.g. 'ViT-B/32'), stored.
        embed_dim       = None, # backbone 'clip': its embedding width D.
        *,
        clip_encoder    = None, # backbone 'clip': the loaded ClipEncoder (not stored; see load_encoder_snapshot).
    ):
        super().__init__()
        self.num_params = int(num_params)
        self.img_channels = int(img_channels)
        if backbone not in BACKBONES:
            raise ValueError(f'backbone must be one of {", ".join(BACKBONES)}, got {backbone!r}')
        if backbone == 'clip':
            if clip_encoder is None or clip_model is None or embed_dim is None:
                raise ValueError("backbone 'clip' needs clip_model, embed_dim and the loaded clip_encoder")
            self.backbone = ClipPairBackbone(clip_encoder, embed_dim, self.img_channels)
        else:
            self.backbone = StatsBackbone(img_channels=2 * self.img_channels, channels=channels)   # [ref, src] stacked
        self.head = torch.nn.Sequential(
            torch.nn.Linear(self.backbone.out_features, hidden), torch.nn.LeakyReLU(0.2),
            torch.nn.Linear(hidden, hidden), torch.nn.LeakyReLU(0.2),
            torch.nn.Linear(hidden, self.num_params))
        torch.nn.init.zeros_(self.head[-1].weight)     # theta starts at the identity.
        torch.nn.init.zeros_(self.head[-1].bias)
        self.register_buffer('theta_identity', torch.as_tensor(theta_identity, dtype=torch.float32).reshape(self.num_params))
        self._kwargs = dict(num_params=self.num_params, img_channels=int(img_channels), channels=int(channels),
                            hidden=int(hidden), backbone=str(backbone))
        if backbone == 'clip':
            self._kwargs.update(clip_model=str(clip_model), embed_dim=int(embed_dim))

    def kwargs(self) -> dict:
        """Constructor arguments (without theta_identity, which is stored as a buffer)."""
        return dict(self._kwargs)

    def embed(self, references: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
        """Domain embedding `[B, D]`: the backbone's features of each (reference, source) pair,
        averaged over the K references."""
        misc.assert_shape(references, [None, None, self.img_channels, None, None])
        misc.assert_shape(sources, list(references.shape))
        B, K = references.shape[:2]
        pairs = torch.cat([references, sources], dim=2).flatten(0, 1)            # [B*K, 2C, H, W]
        return self.backbone(pairs).unflatten(0, [B, K]).mean(dim=1)

    def forward(self, references: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
        return self.theta_identity + self.head(self.embed(references, sources))

    def extra_repr(self):
        return f'num_params={self.num_params}'

#----------------------------------------------------------------------------

SNAPSHOT_FORMAT = 'domain-encoder/1'

class EncoderSnapshotError(dnnlib.util.UserError, ValueError):
    """An encoder snapshot that cannot be read or does not fit the generator."""

def save_encoder_snapshot(path: str, encoder: DomainEncoder, parameterization: str, source_sha256: str,
                          img_resolution: int, options: dict) -> None:
    """Write the snapshot atomically: weights, constructor arguments, the parameterisation's name,
    the source pickle's SHA-256 and resolution, and the run's options (JSON-able, for the record)."""
    data = dict(format=SNAPSHOT_FORMAT, encoder_kwargs=encoder.kwargs(), parameterization=str(parameterization),
                state={k: v.detach().cpu() for k, v in encoder.state_dict().items()},
                source_sha256=str(source_sha256), img_resolution=int(img_resolution), options=options)
    with dnnlib.util.atomic_write_path(path, durable=True) as tmp:
        torch.save(data, tmp)

def load_encoder_snapshot(path: str, flag: str = '--encoder', clip_provider=None) -> tuple:
    """(DomainEncoder in eval mode, snapshot dict without the weights); EncoderSnapshotError on a bad file.

    A CLIP-backbone encoder needs its CLIP model: `clip_provider(name) -> ClipEncoder` (e.g.
    `SharedModels.clip`); None loads the real weights on the CPU, or raises the one-line
    PretrainedWeightsError when they are not available.
    """
    hint = 'pass the .pt file train_encoder.py printed'
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise EncoderSnapshotError(f"{flag}: file not found: '{path}'") from None
    except Exception as err:
        raise EncoderSnapshotError(f"{flag}: '{path}' is not an encoder snapshot ({type(err).__name__}); {hint}") from None
    if not isinstance(data, dict) or data.get('format') != SNAPSHOT_FORMAT:
        raise EncoderSnapshotError(f"{flag}: '{path}' is not an encoder snapshot of format {SNAPSHOT_FORMAT!r}; {hint}")
    try:
        kwargs = dict(data['encoder_kwargs'])
        state = data['state']
        if kwargs.get('backbone') == 'clip':
            kwargs['clip_encoder'] = _load_clip(kwargs.get('clip_model'), clip_provider)
        encoder = DomainEncoder(theta_identity=state['theta_identity'], **kwargs)
        encoder.load_state_dict(state)
    except dnnlib.util.UserError:
        raise                   # The CLIP weights error: already one line naming the model.
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise EncoderSnapshotError(f"{flag}: '{path}' is damaged ({type(err).__name__}); re-run train_encoder.py") from None
    info = {k: v for k, v in data.items() if k != 'state'}
    return encoder.eval().requires_grad_(False), info

def _load_clip(name, clip_provider):
    """The ClipEncoder of a CLIP-backbone snapshot (PretrainedWeightsError passes through: it is one line)."""
    if not isinstance(name, str):
        raise TypeError('clip_model must be a CLIP model name')
    if clip_provider is not None:
        return clip_provider(name)
    from training.expansion.tasks.shared_models import load_open_clip
    return load_open_clip(name, torch.device('cpu'))

def check_fits_generator(info: dict, source_sha256: str, flag: str = '--encoder') -> None:
    """EncoderSnapshotError unless the encoder was trained for this source pickle."""
    if info.get('source_sha256') != source_sha256:
        raise EncoderSnapshotError(f'{flag}: the encoder was trained for a different source network '
            f'(SHA-256 {str(info.get("source_sha256"))[:12]}..., --network has {source_sha256[:12]}...); '
            f'pass the --network it was trained with')

#----------------------------------------------------------------------------
