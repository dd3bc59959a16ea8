"""Measuring the class-conditional baseline like an expanded generator (interfaces.md section 5).

Class 0 plays the base subspace and class k + 1 the repurposed subspace of task k: every task's
error on every class (leakage), and R^2 of each Transform class against T(class-0 image of the
same z). Latents are each task's evaluation latents; a W-latent task (MyStyle) moves to class j by
the class's mean W offset over `n` fixed z (as in training, see `loss`).
"""

import numpy as np
import torch

from training.class_conditional import graft
from training.expansion import evaluation as expansion_evaluation
from training.expansion.render import render


@torch.no_grad()
def class_w(G_mapping: torch.nn.Module, z: torch.Tensor, class_index: int) -> torch.Tensor:
    """W `[N, w_dim]` of z under class `class_index` (psi 1, w_avg untouched)."""
    c = graft.class_labels(class_index, z.shape[0], G_mapping.c_dim, z.device)
    return G_mapping(z, c, skip_w_avg_update=True)[:, 0]


@torch.no_grad()
def task_class_latents(G_mapping: torch.nn.Module, task, n: int, seed: int) -> tuple:
    """`(w_of(class) -> [M, w_dim], context)` of task's evaluation latents."""
    batch = task.eval_latents(n, seed)
    if batch.z is not None:
        z = batch.z.float()
        return (lambda j: class_w(G_mapping, z, j)), batch.context
    w0 = batch.w.float()
    z_ref = torch.from_numpy(np.random.RandomState(seed).randn(n, G_mapping.z_dim)).float().to(w0.device)
    base_ref = class_w(G_mapping, z_ref, graft.SOURCE_CLASS)
    return (lambda j: w0 + (class_w(G_mapping, z_ref, j) - base_ref).mean(dim=0)), batch.context


@torch.no_grad()
def error_matrix(G: torch.nn.Module, tasks: list, n: int = 64, seed: int = 0) -> np.ndarray:
    """`E[k, j]` = mean error of task k on class j + 1 renders, base = class 0 of the same latents."""
    E = np.zeros([len(tasks), len(tasks)])
    for k, task in enumerate(tasks):
        w_of, context = task_class_latents(G.mapping, task, n, seed)
        base_img = render(G.synthesis, w_of(graft.SOURCE_CLASS))
        for j in range(len(tasks)):
            E[k, j] = float(task.error(context, base_img, render(G.synthesis, w_of(j + 1))).mean())
    return E


@torch.no_grad()
def transform_r2(G: torch.nn.Module, tasks: list, n: int = 64, seed: int = 0) -> dict:
    """`{task name: R^2}` of each Transform task's class against T(its class-0 image)."""
    r2 = {}
    for k, task in enumerate(tasks):
        if getattr(task, 'T', None) is None:
            continue
        w_of, _ = task_class_latents(G.mapping, task, n, seed)
        base_img = render(G.synthesis, w_of(graft.SOURCE_CLASS))
        r2[task.name] = expansion_evaluation.r_squared(render(G.synthesis, w_of(k + 1)), task.T(base_img))
    return r2
