"""The Semantic-Score / Diversity protocol of the text (Sec. III; Eq. 13-14), method-agnostic.

Each target domain is a reference image I_d and a folder of adapted images I_{s,d}, one per source
image s of a fixed set (the same file names in every folder: e.g. the `domain/seedNNNN.png` that
encode_domain.py writes for a fixed `--seeds` list, or the same inverted real images adapted by
each method). Per domain:

    Semantic-Score = mean_s cos(E(I_d), E(I_{s,d}))                      (Eq. 13)
    Diversity      = mean_{s1 < s2} (1 - cos(E(I_{s1,d}), E(I_{s2,d})))   (Eq. 14)

with E the CLIP image embedding; the table reports mean ± std over the domains (the text's
Table I). Scores mean something only with real CLIP weights: the command line loads them or
stops with a one-line error, and never falls back to a randomly initialised CLIP.
"""

import dataclasses
import os

import numpy as np
import torch

import dnnlib
from training.expansion.evaluation import pairwise_diversity, semantic_score
from training.expansion.tasks import image_files

#----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ProtocolDomain:
    name:        str    # Row label.
    reference:   str    # Path of the reference image I_d.
    adapted_dir: str    # Folder of adapted images I_{s,d}.

def check_domains(domains: list, flag: str = '--domain') -> list:
    """Sorted adapted file names shared by every domain; UserError naming the flag otherwise."""
    if not domains:
        raise dnnlib.util.UserError(f'{flag}: give at least one domain (NAME REFERENCE ADAPTED_DIR)')
    names = [d.name for d in domains]
    if len(set(names)) != len(names):
        raise dnnlib.util.UserError(f'{flag}: domain names must be unique, got {", ".join(names)}')
    files = None
    for d in domains:
        if not os.path.isfile(d.reference):
            raise dnnlib.util.UserError(f"{flag} {d.name}: reference image not found: '{d.reference}'")
        if not os.path.isdir(d.adapted_dir):
            raise dnnlib.util.UserError(f"{flag} {d.name}: no such folder: '{d.adapted_dir}'")
        stems = sorted(image_files.files_by_stem(d.adapted_dir, image_files.IMAGE_EXTENSIONS)[0])
        if len(stems) < 2:
            raise dnnlib.util.UserError(f"{flag} {d.name}: '{d.adapted_dir}' needs at least 2 images (Diversity compares pairs)")
        if files is not None and stems != files:
            raise dnnlib.util.UserError(f"{flag} {d.name}: '{d.adapted_dir}' does not hold the same image names as "
                                        f"{domains[0].name}'s folder; adapt the same fixed set of source images for every domain")
        files = stems
    return files

@torch.no_grad()
def embed_folder(encoder, folder: str, batch_size: int = 32) -> torch.Tensor:
    """Unit CLIP embeddings `[N, D]` of the folder's images, sorted by name."""
    paths = list(image_files.files_by_stem(folder, image_files.IMAGE_EXTENSIONS)[0].values())
    parts = []
    for start in range(0, len(paths), batch_size):
        images = torch.stack([image_files.load_image(p) for p in paths[start:start + batch_size]])
        parts.append(encoder.encode_images(images.to(encoder.device)).float().cpu())
    return torch.cat(parts)

@torch.no_grad()
def evaluate(encoder, domains: list) -> dict:
    """{'domains': [{name, semantic_score, diversity, num_images}], 'semantic_score': (mean, std),
    'diversity': (mean, std)} over `domains` (ProtocolDomain list), with CLIP `encoder`."""
    check_domains(domains)
    rows = []
    for d in domains:
        reference = encoder.encode_images(image_files.load_image(d.reference)[None].to(encoder.device)).float().cpu()[0]
        adapted = embed_folder(encoder, d.adapted_dir)
        rows.append(dict(name=d.name, semantic_score=semantic_score(adapted, reference),
                         diversity=pairwise_diversity(adapted), num_images=int(adapted.shape[0])))
    summary = {key: (float(np.mean([r[key] for r in rows])), float(np.std([r[key] for r in rows])))
               for key in ('semantic_score', 'diversity')}
    return dict(domains=rows, **summary)

def format_table(result: dict, method: str) -> str:
    """Markdown: one row per domain and the mean ± std row (as the text's Table I)."""
    lines = ['| domain | Semantic-Score | Diversity | images |', '|---|---|---|---|']
    lines += [f'| {r["name"]} | {r["semantic_score"]:.3f} | {r["diversity"]:.3f} | {r["num_images"]} |' for r in result['domains']]
    (s_mean, s_std), (d_mean, d_std) = result['semantic_score'], result['diversity']
    lines.append(f'| **{method}** (mean ± std over {len(result["domains"])} domains) | {s_mean:.3f} ± {s_std:.3f} | '
                 f'{d_mean:.3f} ± {d_std:.3f} | |')
    return '\n'.join(lines)

#----------------------------------------------------------------------------
