"""scripts/bench_gpu.py on the CPU: its FLOP counter against counts worked out by hand, one tiny
timed case end to end, the table, and the command line's errors. (The full-size run needs a GPU
and is a benchmark, not a test.)"""

import pytest
import torch

from conftest import run_cli_inprocess
from scripts import bench_gpu

pytestmark = pytest.mark.usefixtures('one_thread')


def test_flop_count_of_one_convolution_by_hand():
    # Forward: each output element is Cin*kh*kw multiply-adds = 2*Cin*kh*kw FLOPs.
    N, Cin, Cout, H, W, k = 2, 3, 8, 10, 9, 3
    x = torch.randn([N, Cin, H, W], requires_grad=True)
    w = torch.randn([Cout, Cin, k, k], requires_grad=True)
    Hout, Wout = H - k + 1, W - k + 1
    forward = 2 * N * Cout * Hout * Wout * Cin * k * k
    assert bench_gpu.count_flops(lambda: torch.nn.functional.conv2d(x, w)) == forward
    # Backward: the input gradient and the weight gradient each cost one forward's worth.
    assert bench_gpu.count_flops(lambda: torch.nn.functional.conv2d(x, w).sum().backward()) == 3 * forward
    # Grouped (the fused modulated convolution): each output sees Cin/groups input channels.
    xg, wg = torch.randn([1, 6, H, W]), torch.randn([4, 3, k, k])
    grouped = 2 * 1 * 4 * Hout * Wout * 3 * k * k
    assert bench_gpu.count_flops(lambda: torch.nn.functional.conv2d(xg, wg, groups=2)) == grouped
    # A matrix product [a, b] @ [b, c]: a*c outputs of b multiply-adds.
    assert bench_gpu.count_flops(lambda: torch.randn([5, 7]) @ torch.randn([7, 11])) == 2 * 5 * 7 * 11


def test_flop_count_survives_double_backward():
    # R1 differentiates a gradient; torch's FlopCounterMode (module tracking) fails there.
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.randn([2, 3, 8, 8], requires_grad=True)

    def r1():
        grad, = torch.autograd.grad(conv(x).square().sum(), x, create_graph=True)
        grad.square().sum().backward()
    forward = 2 * 2 * 4 * 6 * 6 * 3 * 9
    flops = bench_gpu.count_flops(r1)
    assert flops > 3 * forward  # forward, the first backward, and the backward of that backward


def test_tiny_training_case_runs_and_reports(tmp_path):
    row = bench_gpu.run_case('tiny', 'train', 'plain', 0, torch.device('cpu'), warmup=1, steps=1, clips={},
                             flops=False)
    assert row['resolution'] == 32 and row['batch_gpu'] == 4
    assert row['ms_per_step'] > 0 and row['s_per_kimg'] == pytest.approx(row['ms_per_step'] / 4)
    table = bench_gpu.markdown_table([row, dict(config='tiny', kind='train', variant='compile', error='boom')])
    assert '| tiny 32² b4 | train | plain |' in table and 'error: boom' in table


def test_preset_batch_per_gpu_is_the_official_one():
    assert bench_gpu.preset_spec('stylegan2')['batch_gpu'] == 4   # 32 images over 8 GPUs
    assert bench_gpu.preset_spec('paper256')['batch_gpu'] == 8    # 64 over 8
    assert bench_gpu.preset_spec('stylegan2')['resolution'] == 1024


@pytest.mark.parametrize('args,flag', [(['--configs', 'huge'], '--configs'), (['--variants', 'fast'], '--variants')])
def test_bad_options_give_one_line_errors(args, flag, capsys, tmp_path):
    code, out, err = run_cli_inprocess(bench_gpu.main, ['--device', 'cpu', '--out', str(tmp_path / 'o'), *args], capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith(f'Error: {flag}')
    assert 'Traceback' not in out + err and not (tmp_path / 'o').exists()


def test_pass_flops_on_the_meta_device_match_a_real_count(tmp_path, capsys):
    row = bench_gpu.pass_flops('tiny', ['ViT-B/32'], tiny_clip=True)
    spec = bench_gpu.preset_spec('tiny')
    G, D = bench_gpu.build_networks(spec, channels_last=False, device=torch.device('cpu'))
    n, res = spec['batch_gpu'], spec['resolution']
    ws = torch.randn([n, G.num_ws, spec['w_dim']])
    with torch.no_grad():
        assert row['forward_gflop']['G_synthesis'] * 1e9 == pytest.approx(bench_gpu.count_flops(lambda: G.synthesis(ws)))
        img = torch.randn([n, 3, res, res])
        assert row['forward_gflop']['D'] * 1e9 == pytest.approx(bench_gpu.count_flops(lambda: D(img, torch.zeros([n, 0]))))
    assert row['forward_gflop']['LPIPS alex'] > 0 and row['forward_gflop']['CLIP ViT-B/32 image'] > 0
    code, out, _ = run_cli_inprocess(bench_gpu.main, ['--pass-flops', '--configs', 'tiny', '--clip-models', 'ViT-B/32',
                                                      '--tiny-clip', '--out', str(tmp_path)], capsys)
    assert code == 0 and '| tiny 32² b4 |' in out and (tmp_path / 'pass_flops.md').is_file()
