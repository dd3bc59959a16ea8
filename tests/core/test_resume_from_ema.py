"""train.py --resume_from_ema (not official): the trained G starts from the --resume pickle's
G_ema instead of its G; D and G_ema load as usual; only with a pickle to start from."""

import pytest
import torch

import dnnlib
from tiny_nets import snapshot_data, tiny_discriminator, tiny_generator
from training import loop_setup, run_options, snapshot_io, training_loop
from training.synthetic_data import make_synthetic_dataset

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def source_pkl(tmp_path_factory):
    """A pickle whose G and G_ema differ (as after any training run)."""
    G, D = tiny_generator(seed=0).eval(), tiny_discriminator().eval()
    data = snapshot_data(G, D)
    data['G_ema'] = tiny_generator(seed=1).eval()
    path = str(tmp_path_factory.mktemp('src') / 'source.pkl')
    snapshot_io.save_network_pkl(data, path)
    return path


def load_into_fresh_networks(pkl: str, resume_from_ema: bool) -> tuple:
    with open(pkl, 'rb') as f:
        stored = snapshot_io.load_network_pkl(f)
    G, D, G_ema = loop_setup.build_networks(dict(stored['G'].init_kwargs, class_name='training.networks.Generator'),
                                            dict(stored['D'].init_kwargs, class_name='training.networks.Discriminator'),
                                            torch.device('cpu'))
    opts = dnnlib.EasyDict(resume_pkl=pkl, loss_kwargs=dict(class_name='training.loss.StyleGAN2Loss'))
    if resume_from_ema:
        opts.resume_from_ema = True
    training_loop._load_initial_weights(opts, None, G, D, G_ema, log=lambda *_: None)
    return stored, G, D, G_ema


def same_tensors(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize('resume_from_ema', [False, True])
def test_the_trained_generator_starts_from_the_chosen_network(source_pkl, resume_from_ema):
    stored, G, D, G_ema = load_into_fresh_networks(source_pkl, resume_from_ema)
    assert not same_tensors(stored['G'], stored['G_ema'])
    assert same_tensors(G, stored['G_ema'] if resume_from_ema else stored['G'])
    assert same_tensors(G_ema, stored['G_ema']) and same_tensors(D, stored['D'])


def test_it_needs_a_pickle_to_start_from(tmp_path):
    data = make_synthetic_dataset(str(tmp_path / 'd.zip'), num_images=4, resolution=16, seed=0)
    with pytest.raises(run_options.OptionError, match='--resume_from_ema needs --resume PKL'):
        run_options.setup_training_options(data=data, cfg='tiny', metrics='none', workers=0, resume_from_ema=True)


def test_default_options_do_not_record_it(tmp_path, source_pkl):
    data = make_synthetic_dataset(str(tmp_path / 'd.zip'), num_images=4, resolution=16, seed=0)
    plain = run_options.setup_training_options(data=data, cfg='tiny', metrics='none', workers=0, resume=source_pkl)
    assert 'resume_from_ema' not in plain                   # earlier runs' options still match
    on = run_options.setup_training_options(data=data, cfg='tiny', metrics='none', workers=0, resume=source_pkl,
                                            resume_from_ema=True)
    assert on.resume_from_ema is True
