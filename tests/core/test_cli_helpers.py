"""training/cli_helpers.py: what the command-line tools share (seeds, devices, labels, latents,
snapshots, PNGs), and that no tool borrows helpers from another command line."""

import ast
import os
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
from conftest import REPO_ROOT, require_fixtures
from tiny_nets import tiny_generator
from torch_utils import image_utils
from training import cli_helpers


def test_parse_seeds_ranges_and_errors_name_the_flag():
    assert cli_helpers.parse_seeds('0-3,7,10-11') == [0, 1, 2, 3, 7, 10, 11]
    assert cli_helpers.parse_seeds(' 5 , 5') == [5, 5]
    assert cli_helpers.parse_seeds(str(cli_helpers.MAX_SEED)) == [2 ** 32 - 1]
    for bad in ('3-1', 'a', '1-', '-2', '', '1.5', str(2 ** 32)):
        with pytest.raises(dnnlib.util.UserError, match='^--seeds'):
            cli_helpers.parse_seeds(bad)
    with pytest.raises(dnnlib.util.UserError, match="^--anchor-seeds: cannot parse 'x'"):
        cli_helpers.parse_seeds('x', flag='--anchor-seeds')


def test_parse_device_checks_before_use():
    assert cli_helpers.parse_device('cpu') == torch.device('cpu')
    for bad, message in (('not a device', "cannot parse 'not a device'"), ('meta', "unsupported device type 'meta'")):
        with pytest.raises(dnnlib.util.UserError, match=f'^--device.*{message}'):
            cli_helpers.parse_device(bad)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(dnnlib.util.UserError, match='^--dev cuda:99: ' + ('only' if count else 'no CUDA device')):
        cli_helpers.parse_device('cuda:99', flag='--dev')


def test_make_label_one_hot_and_class_errors(capsys):
    G = tiny_generator(c_dim=3)
    c = cli_helpers.make_label(G, 2, torch.device('cpu'))
    torch.testing.assert_close(c, torch.tensor([[0., 0., 1.]]), rtol=0, atol=0)
    with pytest.raises(dnnlib.util.UserError, match='--class is required'):
        cli_helpers.make_label(G, None, torch.device('cpu'))
    with pytest.raises(dnnlib.util.UserError, match='--class=3 is out of range for 3 classes'):
        cli_helpers.make_label(G, 3, torch.device('cpu'))
    assert cli_helpers.make_label(tiny_generator(), 1, torch.device('cpu')).shape == (1, 0)
    assert 'ignored' in capsys.readouterr().out


def test_latents_follow_the_stylegan_convention():
    z = cli_helpers.seeds_to_z([7, 0, 7], 12)
    assert z.dtype == torch.float32 and z.shape == (3, 12)
    expected = np.random.RandomState(7).randn(1, 12)  # float64, as the official tools draw it
    np.testing.assert_array_equal(cli_helpers.seed_to_z(7, 12), expected)
    torch.testing.assert_close(z[0], torch.from_numpy(expected[0]).float(), rtol=0, atol=0)
    torch.testing.assert_close(z[0], z[2], rtol=0, atol=0)
    assert not torch.equal(z[0], z[1])
    assert cli_helpers.seeds_to_z([], 12).shape == (0, 12)


def test_load_network_and_generator(tmp_path):
    pkl = str(require_fixtures('stylegan2_tiny', 'tiny32_snapshot.pkl'))
    data = cli_helpers.load_network(pkl)
    assert {'G', 'D', 'G_ema'} <= set(data)
    G = cli_helpers.load_generator(pkl, torch.device('cpu'))
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    torch.testing.assert_close(G.mapping.w_avg, data['G_ema'].mapping.w_avg, rtol=0, atol=0)

    (tmp_path / 'random.pkl').write_bytes(np.random.RandomState(1).bytes(3000))
    with pytest.raises(dnnlib.util.UserError, match=r'^--network: .*random\.pkl is not a network pickle'):
        cli_helpers.load_network(str(tmp_path / 'random.pkl'))
    with pytest.raises(dnnlib.util.UserError, match=r'^--parent: .*missing\.pkl'):
        cli_helpers.load_network(str(tmp_path / 'missing.pkl'), flag='--parent')


def test_save_image_writes_the_uint8_pixels(tmp_path):
    image = torch.linspace(-1.2, 1.2, 3 * 4 * 5).reshape(1, 3, 4, 5)
    path = str(tmp_path / 'sub' / 'img.png')
    cli_helpers.save_image(image, path)
    np.testing.assert_array_equal(np.array(PIL.Image.open(path)), image_utils.to_uint8(image)[0])
    cli_helpers.save_image(image[0], path)  # [C, H, W] too
    np.testing.assert_array_equal(np.array(PIL.Image.open(path)), image_utils.to_uint8(image)[0])
    with pytest.raises(ValueError, match=r'expected one image \[1, C, H, W\]'):
        cli_helpers.save_image(torch.zeros(2, 3, 4, 5), path)
    assert sorted(os.listdir(tmp_path / 'sub')) == ['img.png']  # no temporaries left


def _imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_no_tool_imports_another_command_line():
    # The tools share helpers through training.cli_helpers and train through training.launch:
    # none imports generate.py or train.py (tests may, to run those command lines).
    offenders = []
    for folder, subfolders, files in os.walk(REPO_ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith(('.', '_')) and d not in ('tests', 'demo_out')]
        for name in files:
            if name.endswith('.py'):
                path = Path(folder) / name
                found = _imported_modules(path) & {'generate', 'train'}
                if found:
                    offenders.append(f'{path.relative_to(REPO_ROOT)}: {", ".join(sorted(found))}')
    assert offenders == []
