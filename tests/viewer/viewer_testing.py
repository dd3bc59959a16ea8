"""Helpers of the viewer tests: an in-process viewer server and a headless Chromium driven by selenium."""

import contextlib
import io
import shutil
import threading
import urllib.error
import urllib.request

import numpy as np
import PIL.Image
import pytest

from viewer_app.model import load_viewer_model
from viewer_app.server import ViewerServer

CHROMIUM_FLAGS = ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--disable-dev-shm-usage', '--window-size=1300,1000')


@contextlib.contextmanager
def running_viewer(network_pkl, **model_kwargs):
    """A ViewerServer on a free localhost port, serving from a daemon thread."""
    model = load_viewer_model(str(network_pkl), **model_kwargs)
    server = ViewerServer(model, '127.0.0.1', 0)
    thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def http_get(url: str) -> tuple[int, dict, bytes]:
    """(status, headers, body) of a GET; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def http_post(url: str, body: bytes, content_type: str) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=body, method='POST', headers={'Content-Type': content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def png_pixels(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 [H, W, C]."""
    with PIL.Image.open(io.BytesIO(data)) as img:
        array = np.asarray(img.convert('RGB') if img.mode not in ('RGB', 'L') else img)
    return array[:, :, None] if array.ndim == 2 else array


def png_file_bytes(array_hwc: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(array_hwc).save(buffer, format='PNG')
    return buffer.getvalue()


def make_chromium(user_data_dir):
    """Headless Debian Chromium through its chromedriver. A missing browser fails the test (CI
    installs it: .ci/run), it is never a skip."""
    chromium, chromedriver = shutil.which('chromium'), shutil.which('chromedriver')
    if chromium is None or chromedriver is None:
        pytest.fail('the browser tests need Debian chromium and chromium-driver (/usr/bin/chromium, '
                    '/usr/bin/chromedriver): apt-get install -y chromium chromium-driver (.ci/run does)')
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f'--user-data-dir={user_data_dir}')
    return webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
