"""The official projector outputs (projected_w.npz, proj.png, target.png, --save-video proj.mp4)
and generate.py --projected-w, which renders them back; generate.py reports progress."""

import imageio
import numpy as np
import PIL.Image
import pytest
import torch

import generate
import projector
import tiny_nets
from conftest import run_cli_inprocess
from image_compare import assert_images_close
from torch_utils import image_utils
from training import projection
from training import snapshot_io

pytestmark = pytest.mark.usefixtures('one_thread')
NUM_STEPS = 3


@pytest.fixture
def network(tmp_path):
    G = tiny_nets.tiny_generator(seed=7).eval().requires_grad_(False)
    path = tmp_path / 'net.pkl'
    snapshot_io.save_network_pkl(tiny_nets.snapshot_data(G, tiny_nets.tiny_discriminator()), path)
    return G, str(path)


def _save_target(G, path, offset: float) -> np.ndarray:
    image = image_utils.to_uint8(projection.render_latent(G.synthesis, G.mapping.w_avg + offset))[0]
    PIL.Image.fromarray(image).save(path)
    return image


def _png(path) -> np.ndarray:
    return np.asarray(PIL.Image.open(path))


def test_single_target_official_outputs_and_generate_projected_w(network, tmp_path, capsys):
    G, pkl = network
    target = _save_target(G, tmp_path / 'face.png', 0.3)
    out = tmp_path / 'proj'
    code, stdout, err = run_cli_inprocess(projector.main, [
        '--network', pkl, '--target', str(tmp_path / 'face.png'), '--outdir', str(out), '--num-steps', str(NUM_STEPS),
        '--metric', 'l2', '--save-video'], capsys)
    assert code == 0, err

    with np.load(out / 'projected_w.npz') as f:
        w = f['w']
    assert w.shape == (1, G.num_ws, G.w_dim) and w.dtype == np.float32
    latent = torch.load(out / 'face.pt', weights_only=True)                   # W: every row the same latent
    np.testing.assert_array_equal(w[0], latent[None].expand(G.num_ws, -1).numpy())
    np.testing.assert_array_equal(_png(out / 'proj.png'), _png(out / 'face_proj.png'))
    np.testing.assert_array_equal(_png(out / 'target.png'), target)

    frames = imageio.v2.mimread(out / 'proj.mp4', format='FFMPEG')
    H, W = target.shape[:2]
    assert len(frames) == NUM_STEPS and frames[-1].shape[:2] == (H, 2 * W)
    # Lossy video: the left half shows the target, roughly.
    assert np.abs(frames[-1][:, :W].astype(float) - target).mean() < 20

    gen_out = tmp_path / 'gen'
    code, stdout, err = run_cli_inprocess(generate.main, [
        '--network', pkl, '--projected-w', str(out / 'projected_w.npz'), '--outdir', str(gen_out)], capsys)
    assert code == 0, err
    assert 'Generating image for projected latent 0 (1/1)' in stdout
    assert_images_close(gen_out / 'proj00.png', out / 'proj.png')           # another code path
    # The official README types --projected_w (its option is --projected-w): both work.
    code, stdout, err = run_cli_inprocess(generate.main, [
        '--network', pkl, '--projected_w', str(out / 'projected_w.npz'), '--outdir', str(tmp_path / 'gen2')], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(_png(tmp_path / 'gen2' / 'proj00.png'), _png(gen_out / 'proj00.png'))


@pytest.mark.parametrize('args, expected', [([], False), (['--save-video'], True), (['--save-video=false'], False),
                                            (['--save-video=True'], True), (['--save-video', '0'], False)])
def test_save_video_as_a_flag_or_the_official_bool(args, expected):
    required = ['--network', 'n.pkl', '--target', 't.png', '--outdir', 'out']
    with projector.main.make_context('projector.py', required + args) as ctx:
        assert ctx.params['save_video'] is expected


def test_several_targets_carry_their_stem(network, tmp_path):
    G, pkl = network
    (tmp_path / 'photos').mkdir()
    for stem, offset in (('a', 0.2), ('b', -0.2)):
        _save_target(G, tmp_path / 'photos' / f'{stem}.png', offset)
    written = projector.project_images(pkl, str(tmp_path / 'photos'), str(tmp_path / 'out'), num_steps=NUM_STEPS,
                                       metric='l2')
    names = {p.name for p in (tmp_path / 'out').iterdir()}
    assert {'a_projected_w.npz', 'b_projected_w.npz'} <= names and 'projected_w.npz' not in names
    assert sorted(written) == ['a', 'b']


def test_generate_progress_and_projected_w_errors(network, tmp_path, capsys):
    G, pkl = network
    code, stdout, err = run_cli_inprocess(generate.main, ['--network', pkl, '--seeds', '3,5', '--outdir',
                                                          str(tmp_path / 'seeds')], capsys)
    assert code == 0, err
    assert 'Generating image for seed 3 (1/2)' in stdout and 'Generating image for seed 5 (2/2)' in stdout

    bad = tmp_path / 'bad.npz'
    np.savez(bad, w=np.zeros([1, G.num_ws + 1, G.w_dim], np.float32))
    for args, message in ((['--projected-w', str(bad)], '--projected-w'), ([], '--seeds is required')):
        code, stdout, err = run_cli_inprocess(generate.main, ['--network', pkl, '--outdir', str(tmp_path / 'x'),
                                                              *args], capsys)
        last_line = (stdout + err).strip().splitlines()[-1]
        assert code != 0 and message in last_line, last_line
        assert not (tmp_path / 'x').exists()
