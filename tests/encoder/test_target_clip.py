"""TargetCLIP terms (text Eq. 7-8) against values computed by hand, and the task with a CLIP
stand-in whose image embedding is the mean colour."""

import itertools
import math

import pytest
import torch

from training.encoder.target_clip import TargetCLIP, consistency_terms, similarity_terms
from training.expansion.config import ExpansionConfigError, parse_expansion_config
from training.expansion.tasks import ClipEncoder, SharedModels, TaskRuntime
from training.expansion.tasks.image_files import load_image


def test_consistency_is_eq7_mean_over_pairs():
    delta = torch.randn([5, 4], generator=torch.Generator().manual_seed(0))
    pairs = [1 - torch.nn.functional.cosine_similarity(delta[i], delta[j], dim=0)
             for i, j in itertools.combinations(range(5), 2)]
    torch.testing.assert_close(consistency_terms(delta).mean(), torch.stack(pairs).mean())
    parallel = torch.tensor([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0]])
    torch.testing.assert_close(consistency_terms(parallel), torch.zeros(3), atol=1e-6, rtol=0)
    assert torch.equal(consistency_terms(delta[:1]), torch.zeros(1))


def test_similarity_is_eq8():
    edit = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    target = torch.tensor([1.0, 0.0])
    torch.testing.assert_close(similarity_terms(edit, target), torch.tensor([0.0, 1.0, 1 - 1 / math.sqrt(2)]))


class MeanColour(torch.nn.Module):
    def encode_image(self, x):
        return x.mean(dim=[2, 3])


def _runtime():
    models = SharedModels('cpu')
    models.register_clip('ViT-B/32', ClipEncoder(MeanColour(), None, 8, mean=[0.5] * 3, std=[0.5] * 3, name='mean-colour'))
    return TaskRuntime(device=torch.device('cpu'), z_dim=4, w_dim=8, img_resolution=8, img_channels=3, models=models)


def test_task_error_and_gradient(tmp_path):
    from training import cli_helpers
    target_path = str(tmp_path / 'ariel.png')
    cli_helpers.save_image(torch.tensor([0.8, -0.6, 0.2]).reshape(1, 3, 1, 1).repeat(1, 1, 8, 8), target_path)
    task = TargetCLIP(target_path, consistency_weight=0.5, dimension=3, runtime=_runtime())
    assert task.name == 'ariel'
    target = load_image(target_path)[None]
    base = torch.rand([4, 3, 8, 8], generator=torch.Generator().manual_seed(1)) * 2 - 1
    edit = (base + torch.randn([4, 3, 1, 1], generator=torch.Generator().manual_seed(2))).requires_grad_(True)
    errors = task.error(None, base, edit)
    unit = lambda x: torch.nn.functional.normalize(x.mean(dim=[2, 3]), dim=1)      # the stand-in's E
    u_edit, u_base, u_target = unit(edit.detach()), unit(base), unit(target)[0]
    delta = u_edit - u_base
    cos = torch.nn.functional.cosine_similarity
    expected = [(1 - cos(u_edit[i], u_target, dim=0))
                + 0.5 * sum(1 - cos(delta[i], delta[j], dim=0) for j in range(4) if j != i) / 3 for i in range(4)]
    torch.testing.assert_close(errors.detach(), torch.stack(expected), atol=1e-5, rtol=1e-5)
    errors.sum().backward()
    assert edit.grad.abs().sum() > 0


def test_config_errors_name_the_argument(tmp_path):
    cfg = {'tasks': [{'type': 'training.encoder.target_clip.TargetCLIP',
                      'args': {'target_image': str(tmp_path / 'missing.png'), 'clip_model': 'nope', 'consistency_weight': -1}}]}
    with pytest.raises(ExpansionConfigError) as info:
        parse_expansion_config(cfg, w_dim=8, img_resolution=8, img_channels=3)
    message = str(info.value)
    assert 'args.target_image: file not found' in message
    assert "args.clip_model: unknown CLIP model 'nope'" in message
    assert 'args.consistency_weight: must be >= 0' in message
