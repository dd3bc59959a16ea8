"""Run folders written before the expansion package existed still load: the class names their
training_options.json and configs store resolve, and their old loss kwargs are accepted."""

import copy
import json

import torch

import dnnlib
from tiny_nets import tiny_discriminator, tiny_generator
from training import loop_setup
from training.expansion.loss import DomainExpansionLoss
from training.expansion.tasks import NADA, Transform, get_task_class
from training.expansion.tasks.shared_models import SharedModels

# loss_kwargs as train.py wrote them before training/expansion/ (resume_pkl points nowhere: the
# loss must not read it; the loop set-up hands the basis in).
OLD_OPTIONS = json.loads('''{
  "loss_kwargs": {"class_name": "training.expansion_loss.DomainExpansionLoss",
                  "expansion_cfg": {"tasks": [{"type": "training.adaptation_tasks.Transform", "dimension": 15,
                                               "args": {"transform": "negative"}}]},
                  "latent_factors_path": null, "resume_pkl": "/nonexistent/source.pkl",
                  "replay_noise": "independent", "subspace_distance": 20.0, "lambda_src": 0.0,
                  "lambda_expand": 1.0, "lambda_recon_l2": 10.0, "lambda_recon_lpips": 0.0}
}''')


def test_old_class_names_resolve_to_the_package_classes():
    assert dnnlib.util.get_obj_by_name('training.expansion_loss.DomainExpansionLoss') is DomainExpansionLoss
    assert get_task_class('training.adaptation_tasks.NADA') is NADA
    assert get_task_class('training.adaptation_tasks.Transform') is Transform


def test_old_training_options_build_the_loss():
    torch.manual_seed(0)
    G = tiny_generator(16)
    G_ema = copy.deepcopy(G).eval()
    kwargs = {**OLD_OPTIONS['loss_kwargs'], 'shared_models': SharedModels('cpu')}
    loss = loop_setup.build_loss(kwargs, G, tiny_discriminator(), G_ema, None, 4, torch.device('cpu'), snapshot=None)
    assert type(loss) is DomainExpansionLoss and loss.config.repurposed_dims == [15]
    assert loss.G_synthesis_frozen is not None
    loss.accumulate_gradients('G_expand_and_recon', None, None, torch.randn([4, G.z_dim]), torch.zeros([4, 0]), 1.0, 0)
