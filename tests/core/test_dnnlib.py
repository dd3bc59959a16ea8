"""dnnlib: attribute dicts, objects by name, and open_url's cache and offline error."""

import functools
import http.server
import socket
import threading

import pytest

import dnnlib
from dnnlib import util


def test_easydict_attribute_access_and_missing_key():
    d = dnnlib.EasyDict(a=1)
    d.b = 2
    assert d == {'a': 1, 'b': 2} and d.a == 1
    del d.a
    assert 'a' not in d
    with pytest.raises(AttributeError):
        _ = d.missing


def test_construct_and_call_by_name():
    od = util.construct_class_by_name(class_name='collections.OrderedDict', x=1)
    assert type(od).__name__ == 'OrderedDict' and od['x'] == 1
    assert util.call_func_by_name('a', 'b', func_name='os.path.join') == 'a/b'
    with pytest.raises(ImportError, match='no attribute path'):
        util.get_obj_by_name('os.path.does_not_exist')


def test_format_time():
    assert util.format_time(5) == '5s'
    assert util.format_time(65) == '1m 05s'
    assert util.format_time(3725) == '1h 02m 05s'
    assert util.format_time(2 * 86400 + 3600) == '2d 01h 00m'


def test_open_url_local_and_file_url(tmp_path):
    path = tmp_path / 'blob.bin'
    path.write_bytes(b'abc')
    with util.open_url(str(path)) as f:
        assert f.read() == b'abc'
    with util.open_url(path.as_uri()) as f:
        assert f.read() == b'abc'
    with pytest.raises(FileNotFoundError, match='missing.bin'):
        util.open_url(str(tmp_path / 'missing.bin'))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_open_url_offline_error_names_url_and_cache_path(tmp_path):
    url = f'http://127.0.0.1:{_free_port()}/weights/model.pkl'  # nothing listens there
    with pytest.raises(util.DownloadError) as info:
        util.open_url(url, cache_dir=str(tmp_path), num_attempts=1, timeout_s=2)
    message = str(info.value)
    assert url in message and util.url_cache_path(url, str(tmp_path)) in message
    assert '\n' not in message


def test_open_url_downloads_once_then_uses_cache(tmp_path):
    served = tmp_path / 'srv'
    served.mkdir()
    (served / 'net.pkl').write_bytes(b'payload')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f'http://127.0.0.1:{server.server_address[1]}/net.pkl'
    cache = tmp_path / 'cache'
    try:
        with util.open_url(url, cache_dir=str(cache)) as f:
            assert f.read() == b'payload'
    finally:
        server.shutdown()
    # Served no more: the second open must come from the cache file.
    with util.open_url(url, cache_dir=str(cache)) as f:
        assert f.read() == b'payload'
    assert util.open_url(url, cache_dir=str(cache), return_filename=True) == util.url_cache_path(url, str(cache))
