"""viewer.py as a command: it serves the fixed interface on the port it prints and stops on Ctrl+C;
bad flags are one-line errors before anything listens."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

import viewer
from conftest import REPO_ROOT, require_fixtures, run_cli_inprocess
from viewer_testing import http_get

EXPANDED_PKL = ('stylegan2_tiny', 'tiny32_expanded_snapshot.pkl')


def test_command_serves_and_stops_on_ctrl_c():
    # PYTHONFAULTHANDLER: should it ever hang after Ctrl+C, SIGABRT makes it print every thread's stack.
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1', PYTHONFAULTHANDLER='1')
    proc = subprocess.Popen([sys.executable, 'viewer.py', '--network', str(require_fixtures(*EXPANDED_PKL)),
                             '--port', '0'], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            # A shell starts background jobs with SIGINT ignored, and Python keeps an inherited
                            # SIG_IGN: give the viewer a terminal's default, as a user's Ctrl+C meets it.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stdout.readline()
        assert line.startswith('Serving ') and ' at http://127.0.0.1:' in line, line
        url = line.split(' at ', 1)[1].split()[0]
        status, _, body = http_get(url + 'api/domains')
        assert status == 200 and [d['dimension'] for d in json.loads(body)['domains']] == [31, 30]
        status, headers, _ = http_get(url + 'api/render?seed=0&domains=dim031:1')
        assert status == 200 and headers['Content-Type'] == 'image/png'
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            pytest.fail('viewer did not stop within 30 s of SIGINT; its output and stacks:\n' + proc.communicate(timeout=30)[0])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert out.strip().splitlines()[-1] == 'Stopped.'


@pytest.mark.parametrize('args, names', [
    (['--network', 'missing.pkl'], '--network'),
    (['--network', '{pkl}', '--metric', 'ssim'], '--metric'),
    (['--network', '{pkl}', '--device', 'tpu'], '--device'),
    (['--network', '{pkl}', '--class', '3'], '--class'),
    (['--network', '{pkl}', '--port', '70000'], '--port'),
])
def test_bad_flags_are_one_line_errors(args, names, capsys):
    args = [arg.format(pkl=require_fixtures(*EXPANDED_PKL)) for arg in args]
    code, out, err = run_cli_inprocess(viewer.main, args, capsys)
    assert code == 2
    assert 'Traceback' not in out + err
    last = (out + err).strip().splitlines()[-1]
    assert last.startswith('Error: ') and names in last, last


def test_busy_port_is_a_user_error(capsys):
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run_cli_inprocess(viewer.main, ['--network', str(require_fixtures(*EXPANDED_PKL)),
                                                         '--port', str(port)], capsys)
    assert code == 2
    last = (out + err).strip().splitlines()[-1]
    assert f'--port {port}' in last and 'cannot listen' in last, last
