"""The viewer's HTTP interface (issue 15): renders equal our command-line tools' images, the
command line shown beside an image writes that image, bad parameters are one-line HTTP 400s,
uploads are checked, and a projected photo equals projector.py's."""

import io
import json
import shlex
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import PIL.Image
import pytest
import torch

import generate
import generate_aligned
import projector
import traverse
from conftest import require_fixtures, run_cli_inprocess
from training.expansion.expanded_generator import load_expanded_generator
from viewer_app import uploads
from viewer_app.model import RequestError, load_viewer_model
from viewer_testing import http_get, http_post, png_file_bytes, png_pixels, running_viewer

pytestmark = pytest.mark.usefixtures('one_thread')

EXPANDED_PKL = ('stylegan2_tiny', 'tiny32_expanded_snapshot.pkl')
PLAIN_PKL = ('stylegan2_tiny', 'tiny32_snapshot.pkl')
SG3_PKL = 'sg3t_tiny32_snapshot.pkl'        # StyleGAN3 config T (issue 17)
TOOLS = {'generate.py': generate, 'generate_aligned.py': generate_aligned, 'traverse.py': traverse}


@pytest.fixture(scope='module')
def expanded_server():
    torch.set_num_threads(1)
    with running_viewer(require_fixtures(*EXPANDED_PKL)) as server:
        yield server


@pytest.fixture(scope='module')
def plain_server():
    with running_viewer(require_fixtures(*PLAIN_PKL)) as server:
        yield server


def render(server, **params) -> tuple[np.ndarray, str]:
    """uint8 [H, W, C] and the X-Viewer-Command of /api/render?params."""
    status, headers, body = http_get(f'{server.url}api/render?{urllib.parse.urlencode(params)}')
    assert status == 200, body
    assert headers['Content-Type'] == 'image/png'
    return png_pixels(body), headers['X-Viewer-Command']


def assert_within_one_level(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    diff = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1, f'{int((diff > 1).sum())} values differ by more than one level (max {diff.max()})'

#----------------------------------------------------------------------------


def test_domains_lists_the_snapshot_domains(expanded_server, plain_server):
    eg = load_expanded_generator(str(require_fixtures(*EXPANDED_PKL)))
    status, headers, body = http_get(expanded_server.url + 'api/domains')
    assert status == 200 and headers['Content-Type'] == 'application/json'
    expected = [dict(name=name, dimension=dim) for name, dim in zip(eg.names, eg.dims)]
    assert json.loads(body) == dict(domains=expected, resolution=eg.G.img_resolution)
    assert len(expected) >= 2
    status, _, body = http_get(plain_server.url + 'api/domains')
    assert status == 200 and json.loads(body) == dict(domains=[], resolution=32)


def test_renders_equal_generate_aligned(expanded_server, tmp_path):
    seed, trunc = 3, 0.7
    generate_aligned.generate_aligned(str(require_fixtures(*EXPANDED_PKL)), [seed], str(tmp_path), truncation_psi=trunc,
                                      grid=False, progress=False)
    base, _ = render(expanded_server, seed=seed, trunc=trunc)
    assert_within_one_level(base, png_pixels((tmp_path / 'base' / f'seed{seed:04d}.png').read_bytes()))
    eg = load_expanded_generator(str(require_fixtures(*EXPANDED_PKL)))
    for k, name in enumerate(eg.names):
        image, _ = render(expanded_server, seed=seed, trunc=trunc, domains=f'{name}:1')
        assert_within_one_level(image, png_pixels((tmp_path / eg.folder_name(k) / f'seed{seed:04d}.png').read_bytes()))
        assert np.abs(image.astype(int) - base.astype(int)).max() > 8, f'domain {name} renders like the base'
    zero, _ = render(expanded_server, seed=seed, trunc=trunc, domains=f'{eg.names[0]}:0')
    np.testing.assert_array_equal(zero, base)                    # strength 0 = the base subspace, same path


@pytest.mark.parametrize('params', [
    dict(seed=5, trunc=0.5),                                     # generate_aligned.py base/
    dict(seed=5, trunc=1.0, domains='marble statue:1'),          # generate_aligned.py dimDDD_<name>/
    dict(seed=6, trunc=0.8, domains='watercolor painting:0.35,dim030:1.2'),   # traverse.py --compose
])
def test_shown_command_writes_the_same_image(expanded_server, params, tmp_path, capsys):
    image, command = render(expanded_server, **params)
    run_command(command, tmp_path, capsys, image)


def test_plain_generator_renders_like_generate_py(plain_server, tmp_path, capsys):
    image, command = render(plain_server, seed=7, trunc=0.6)
    assert command.startswith('python generate.py ')
    run_command(command, tmp_path, capsys, image)
    status, _, body = http_get(f'{plain_server.url}api/render?seed=7&domains=dim031:1')
    assert status == 400 and 'plain generator' in json.loads(body)['error']


def run_command(command: str, tmp_path, capsys, expected: np.ndarray) -> None:
    """Run the shown `python TOOL.py ... --outdir out  # out/FILE` in-process; its FILE must equal `expected`."""
    line, _, written = command.partition('  # ')
    args = shlex.split(line)
    assert args[0] == 'python' and args[1] in TOOLS, command
    args = args[2:]
    args[args.index('--outdir') + 1] = str(tmp_path / 'out')
    code, out, err = run_cli_inprocess(TOOLS[line.split()[1]].main, args, capsys)
    assert code == 0, err
    assert written.startswith('out/'), command
    assert_within_one_level(expected, png_pixels((tmp_path / written).read_bytes()))


def test_repeated_renders_use_the_latent_cache(expanded_server):
    first, _ = render(expanded_server, seed=11, trunc=0.9, domains='dim031:0.5')
    render(expanded_server, seed=12, trunc=0.9)
    again, _ = render(expanded_server, seed=11, trunc=0.9, domains='dim031:0.5')
    np.testing.assert_array_equal(first, again)
    assert (11, 0.9) in expanded_server.model._latents and (12, 0.9) in expanded_server.model._latents

#----------------------------------------------------------------------------


@pytest.mark.parametrize('query, names', [
    ('seed=1&domains=cubism:1', "'cubism'"),
    ('seed=1&domains=dim031:strong', 'strength'),
    ('seed=1&domains=dim031:nan', 'strength'),
    ('seed=1&domains=dim031:2', 'out of range'),
    ('seed=1&domains=dim031', 'NAME:STRENGTH'),
    ('seed=1&domains=dim031:1,31:0.5', 'twice'),
    ('seed=4294967296', 'seed'),
    ('seed=-1', 'seed'),
    ('seed=1.5', 'seed'),
    ('trunc=0.5', 'seed: missing'),
    ('seed=1&trunc=abc', 'trunc'),
    ('seed=1&trunc=inf', 'trunc'),
    ('seed=1&seed=2', "'seed'"),
    ('seed=1&size=64', "'size'"),
    ('photo=photo99', 'photo'),
])
def test_bad_parameters_are_one_line_400s(expanded_server, query, names):
    status, headers, body = http_get(f'{expanded_server.url}api/render?{query}')
    assert status == 400, body
    assert headers['Content-Type'] == 'application/json'
    text = body.decode('utf-8')
    assert text.count('\n') == 1 and text.endswith('\n'), text
    assert names in json.loads(text)['error']


def test_only_loopback_host_names_are_served(expanded_server):
    port = expanded_server.server_address[1]
    for host, expected in [(f'localhost:{port}', 200), (f'127.0.0.1:{port}', 200), (f'attacker.example:{port}', 403)]:
        request = urllib.request.Request(expanded_server.url + 'api/domains', headers={'Host': host})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status = response.status
        except urllib.error.HTTPError as err:
            status, body = err.code, err.read()
            assert 'attacker.example' in json.loads(body)['error']
        assert status == expected, host


def test_unknown_paths_are_404_json(expanded_server):
    status, _, body = http_get(expanded_server.url + 'api/nothing')
    assert status == 404 and 'error' in json.loads(body)
    status, _, body = http_get(expanded_server.url + '../../etc/passwd')
    assert status == 404

#----------------------------------------------------------------------------


def test_upload_checks(expanded_server):
    url = expanded_server.url + 'api/project?steps=2'
    status, _, body = http_post(url, b'\x80\x04\x95fake pickle', 'image/png')
    assert status == 400 and 'pickle' in json.loads(body)['error']
    status, _, body = http_post(url, b'not an image at all', 'image/png')
    assert status == 400 and 'not a readable' in json.loads(body)['error']
    status, _, body = http_post(url, png_file_bytes(np.zeros([8, 8, 3], np.uint8)), 'application/octet-stream')
    assert status == 415 and 'Content-Type' in json.loads(body)['error']
    status, _, body = http_post(expanded_server.url + 'api/project?steps=0', png_file_bytes(np.zeros([8, 8, 3], np.uint8)),
                                'image/png')
    assert status == 400 and 'steps' in json.loads(body)['error']
    with pytest.raises(RequestError, match='too large') as info:
        uploads.check_upload_headers('image/png', str(uploads.MAX_UPLOAD_BYTES + 1))
    assert info.value.http_status == 413
    with pytest.raises(RequestError, match='megapixels'):
        uploads.load_upload(_huge_png(), 32, 3)


def _huge_png() -> bytes:
    """A small file that declares more pixels than MAX_UPLOAD_PIXELS (a 1-bit image compresses well)."""
    side = int(uploads.MAX_UPLOAD_PIXELS ** 0.5) + 1
    buffer = io.BytesIO()
    PIL.Image.new('1', (side, side)).save(buffer, format='PNG')
    return buffer.getvalue()


def test_photo_projection_equals_projector(expanded_server, tmp_path):
    rng = np.random.RandomState(0)
    photo = (rng.rand(40, 48, 3) * 255).astype(np.uint8)                 # not square: center crop + resize
    (tmp_path / 'face.png').write_bytes(png_file_bytes(photo))
    status, _, body = http_post(expanded_server.url + 'api/project?steps=3', png_file_bytes(photo), 'image/png')
    assert status == 202, body
    job = json.loads(body)['job']
    deadline = time.monotonic() + 120
    while (info := json.loads(http_get(f'{expanded_server.url}api/project/{job}')[2]))['state'] != 'done':
        assert info['state'] in ('queued', 'running') and time.monotonic() < deadline, info
        time.sleep(0.05)
    assert info['step'] == info['num_steps'] == 3 and info['photo'] == job

    written = projector.project_images(str(require_fixtures(*EXPANDED_PKL)), str(tmp_path / 'face.png'),
                                       str(tmp_path / 'out'), num_steps=3, metric='l2', expanded=True, resize=True)
    base, command = render(expanded_server, photo=job)
    assert command.startswith('python projector.py ') and '--num-steps 3' in command and '--expanded' in command
    assert_within_one_level(base, png_pixels((tmp_path / 'out' / 'face' / 'base.png').read_bytes()))
    eg = load_expanded_generator(str(require_fixtures(*EXPANDED_PKL)))
    edit, _ = render(expanded_server, photo=job, domains=f'{eg.names[1]}:1')
    assert_within_one_level(edit, png_pixels((tmp_path / 'out' / 'face' / f'{eg.folder_name(1)}.png').read_bytes()))
    assert len(written['face']) > 3


def test_allow_task_import_is_repeated_in_the_commands(tmp_path, capsys):
    model = load_viewer_model(str(require_fixtures(*EXPANDED_PKL)), allow_task_import=True)
    request = model.parse_request({'seed': ['2'], 'domains': ['dim031:0.5']})
    command = model.command_line(request)
    assert '--allow-task-import' in command
    run_command(command, tmp_path, capsys, model.render(request))


def test_stylegan3_generator_renders_like_generate_py(tmp_path, capsys):
    """The viewer takes a StyleGAN3 pickle (issue 17): its render equals generate.py's."""
    with running_viewer(require_fixtures('stylegan3_tiny', SG3_PKL)) as server:
        image, command = render(server, seed=3, trunc=1)
        status, _, body = http_get(f'{server.url}api/domains')
    assert status == 200 and json.loads(body) == dict(domains=[], resolution=32)
    assert command.startswith('python generate.py ')
    run_command(command, tmp_path, capsys, image)
