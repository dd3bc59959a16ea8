"""The encoder's CLIP path: the text's losses (training/encoder/clip_losses.py) on embeddings with
known geometry, and the wiring (CLIP backbone, CLIP losses, snapshot, command line) with a tiny
randomly initialised open_clip model built here: nothing is downloaded, and nothing computed with
this random CLIP is a Semantic-Score."""

import os

import pytest
import torch

import dnnlib
from conftest import run_cli_inprocess
from tiny_nets import snapshot_data, tiny_discriminator, tiny_generator
from training import snapshot_io
from training.encoder import clip_losses
from training.encoder import training as encoder_training
from training.encoder.encoder import load_encoder_snapshot, save_encoder_snapshot
from training.expansion.parameterizations import get_parameterization
from training.expansion.tasks import shared_models
from training.expansion.tasks.shared_models import ClipEncoder, PretrainedWeightsError

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def tiny_clip():
    """A random open_clip CLIP (embedding width 16, 32 px input) wrapped as the project loads CLIP."""
    open_clip = pytest.importorskip('open_clip')
    torch.manual_seed(0)
    model = open_clip.CLIP(embed_dim=16, vision_cfg=dict(layers=1, width=32, head_width=16, patch_size=8, image_size=32),
                           text_cfg=dict(context_length=8, vocab_size=64, width=16, heads=2, layers=1))
    model = model.eval().requires_grad_(False)
    return ClipEncoder(model, tokenize=None, image_size=32, mean=open_clip.OPENAI_DATASET_MEAN,
                       std=open_clip.OPENAI_DATASET_STD, name='tiny-random')


@pytest.fixture(scope='module')
def G():
    return tiny_generator(seed=3).eval().requires_grad_(False)


def unit(x):
    return torch.nn.functional.normalize(x, dim=-1)

#----------------------------------------------------------------------------
# The losses on embeddings whose geometry we know.


def test_direction_loss_is_one_minus_cosine_to_the_reference_direction():
    src = unit(torch.randn([2, 3, 4]))
    d = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    along = src + 0.5 * d[:, None]                                          # dI parallel to d: cos 1
    against = src - 2.0 * d[:, None]                                        # anti-parallel: cos -1
    across = src + torch.tensor([[0, 0, 1.0, 0], [0, 0, 0, 1.0]])[:, None]  # orthogonal: cos 0
    assert float(clip_losses.direction_loss(along, src, d)) == pytest.approx(0, abs=1e-6)
    assert float(clip_losses.direction_loss(against, src, d)) == pytest.approx(2, abs=1e-6)
    assert float(clip_losses.direction_loss(across, src, d)) == pytest.approx(1, abs=1e-6)


def test_tt_direction_loss_compares_differences_between_domains():
    d = torch.randn([3, 5])
    assert float(clip_losses.tt_direction_loss(d + torch.randn([5]), d)) == pytest.approx(0, abs=1e-6)  # shared offset cancels
    assert float(clip_losses.tt_direction_loss(-d, d)) == pytest.approx(2, abs=1e-6)
    with pytest.raises(ValueError, match='at least 2 domains'):
        clip_losses.tt_direction_loss(d[:1], d[:1])


def test_indomain_angle_loss_is_zero_for_rotations_and_matches_the_pair_sum():
    src = unit(torch.randn([2, 4, 6], dtype=torch.float64))
    Q = torch.linalg.qr(torch.randn([6, 6], dtype=torch.float64))[0]
    assert float(clip_losses.indomain_angle_loss(src, src @ Q)) == pytest.approx(0, abs=1e-12)
    gen = unit(torch.randn([2, 4, 6], dtype=torch.float64))
    terms = [(float(src[b, i] @ src[b, j]) - float(gen[b, i] @ gen[b, j])) ** 2
             for b in range(2) for i in range(4) for j in range(i + 1, 4)]           # Eq. 11, pairs i < j
    assert float(clip_losses.indomain_angle_loss(src, gen)) == pytest.approx(sum(terms) / len(terms), rel=1e-12)


def test_domain_norm_is_the_distance_to_identity():
    theta_id = torch.tensor([1.0, 1.0, 0.0])
    theta = torch.tensor([[1.0, 3.0, 0.0], [1.0, 1.0, -1.0]])
    assert float(clip_losses.domain_norm_loss(theta, theta_id)) == pytest.approx((4 + 1) / 6)


def test_clip_objective_reaches_the_renders_only(tiny_clip):
    B, m, K = 2, 3, 2
    pred = (torch.rand([B * m, 3, 16, 16]) * 2 - 1).requires_grad_(True)
    refs = torch.rand([B, K, 3, 16, 16]) * 2 - 1
    theta = torch.randn([B, 12], requires_grad=True)
    total, parts = clip_losses.clip_objective(tiny_clip, pred, torch.rand_like(pred) * 2 - 1, refs, refs.flip(2),
                                              theta, torch.zeros([12]), clip_losses.ClipLossWeights())
    assert set(parts) == {'direction', 'tt', 'angle', 'norm'}
    expected = parts['direction'] + parts['tt'] + parts['angle'] + 1e-3 * parts['norm']
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)
    total.backward()
    assert pred.grad.abs().sum() > 0 and bool(torch.isfinite(pred.grad).all())
    assert theta.grad is not None and all(p.grad is None for p in tiny_clip.model.parameters())

#----------------------------------------------------------------------------
# Wiring.


def test_clip_backbone_and_losses_train_and_round_trip(tiny_clip, G, tmp_path):
    param = get_parameterization('rgb_affine', G.synthesis)
    opts = encoder_training.EncoderTrainingOptions(steps=4, pool_size=16, domains_per_step=2, targets_per_domain=2,
                                                   max_references=2, hidden=16, lr=1e-2, backbone='clip', losses='clip')
    clip_before = {k: v.clone() for k, v in tiny_clip.model.state_dict().items()}
    encoder, losses = encoder_training.train_encoder(param, G.mapping, opts, clip=tiny_clip)
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    assert encoder.head[-1].weight.abs().sum() > 0                               # the head trained
    assert all(torch.equal(v, tiny_clip.model.state_dict()[k]) for k, v in clip_before.items())  # CLIP frozen
    refs, srcs = torch.rand([1, 2, 3, 16, 16]) * 2 - 1, torch.rand([1, 2, 3, 16, 16]) * 2 - 1
    theta = encoder(refs, srcs)
    assert not torch.equal(theta[0], param.identity())

    path = str(tmp_path / 'enc.pt')
    save_encoder_snapshot(path, encoder, 'rgb_affine', 'abc', 16, dict(steps=4))
    stored = torch.load(path, weights_only=True)
    assert stored['encoder_kwargs']['backbone'] == 'clip' and stored['encoder_kwargs']['clip_model'] == 'tiny-random'
    assert not any('clip' in key for key in stored['state'])                     # CLIP weights are not stored
    asked = []
    loaded, _ = load_encoder_snapshot(path, clip_provider=lambda name: asked.append(name) or tiny_clip)
    assert asked == ['tiny-random'] and torch.equal(loaded(refs, srcs), theta)


def test_clip_snapshot_without_weights_is_the_one_line_weights_error(tiny_clip, G, tmp_path, monkeypatch):
    param = get_parameterization('rgb_affine', G.synthesis)
    opts = encoder_training.EncoderTrainingOptions(backbone='clip', hidden=8)
    path = str(tmp_path / 'enc.pt')
    save_encoder_snapshot(path, encoder_training.build_encoder(param, opts, 'cpu', tiny_clip, 'ViT-B/32'),
                          'rgb_affine', 'abc', 16, {})
    def offline(name, device, cache_dir=None):
        raise PretrainedWeightsError(f'CLIP model {name!r} could not be loaded (offline)')
    monkeypatch.setattr(shared_models, 'load_open_clip', offline)
    with pytest.raises(PretrainedWeightsError, match="CLIP model 'ViT-B/32'"):
        load_encoder_snapshot(path)


def test_cli_clip_options_offline_stop_with_the_weights_error(G, tmp_path, capsys, monkeypatch):
    import train_encoder
    monkeypatch.setenv(dnnlib.util.OFFLINE_ENV, '1')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    pkl = tmp_path / 'tiny.pkl'
    snapshot_io.save_network_pkl(snapshot_data(G, tiny_discriminator()), pkl)
    cache = tmp_path / 'empty-cache'
    cache.mkdir()
    for flags in (['--backbone', 'clip'], ['--losses', 'clip']):
        out = tmp_path / f'out{flags[0]}'
        code, stdout, err = run_cli_inprocess(train_encoder.main, ['--network', str(pkl), '--outdir', str(out),
                                              '--steps', '1', '--clip-cache', str(cache), *flags], capsys)
        assert code != 0 and 'Traceback' not in err, err
        assert "CLIP model 'ViT-B/32'" in err.strip().splitlines()[-1] and not os.path.exists(out)
    code, _, err = run_cli_inprocess(train_encoder.main, ['--network', str(pkl), '--outdir', str(tmp_path / 'x'),
                                     '--losses', 'clip', '--clip', 'nonsense'], capsys)
    assert code != 0 and '--clip: unknown CLIP model' in err and not os.path.exists(tmp_path / 'x')
