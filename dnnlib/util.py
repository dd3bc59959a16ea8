"""Plain-Python utilities shared by every layer: attribute dicts, building objects by
dotted name, time formatting, cached URL opening and atomic file writes. No torch here (see
STYLE.md, Layers)."""

import contextlib
import hashlib
import importlib
import io
import json
import os
import re
import secrets
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterator

# ---------------------------------------------------------------------------------------------


class UserError(Exception):
    """Bad input from the user (flag, config, file). Command lines print its one-line message as
    the last line of output and exit with status 2, without a traceback. Input-error classes of
    other modules derive from it (e.g. SnapshotError, DatasetError, ExpansionConfigError)."""


_CONTROL_CHARS_RE = re.compile('[\x00-\x1f\x7f-\x9f\u2028\u2029]')


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes (ties an adapted model to the exact source pickle)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def one_line(text: str, max_chars: int = 2000) -> str:
    """`text` safe to print as one line: control characters (newlines included) escaped as in a
    Python literal, and at most `max_chars` characters. For messages that quote file data."""
    text = _CONTROL_CHARS_RE.sub(lambda m: repr(m.group(0))[1:-1], str(text))
    if len(text) > max_chars:
        text = text[:max_chars - 30] + f'... ({len(text) - max_chars + 30} more characters)'
    return text


class EasyDict(dict):
    """A dict whose keys can also be read and written as attributes (`d.lr` == `d['lr']`)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]


def format_time(seconds: float) -> str:
    """Human-readable duration: '42s', '3m 05s', '2h 07m 13s', '1d 04h 10m'."""
    s = int(round(seconds))
    if s < 60:
        return f'{s}s'
    if s < 60 * 60:
        return f'{s // 60}m {s % 60:02d}s'
    if s < 24 * 60 * 60:
        return f'{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s'
    return f'{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m'

# ---------------------------------------------------------------------------------------------
# Objects by dotted name ('training.networks.Generator').


def get_obj_by_name(name: str) -> Any:
    """Import the longest importable module prefix of `name` and return the attribute path after it."""
    parts = name.split('.')
    for split in range(len(parts) - 1, 0, -1):
        module_name = '.'.join(parts[:split])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            # Only swallow "this prefix is not a module"; an import error *inside* the module is real.
            if e.name is not None and module_name.startswith(e.name):
                continue
            raise
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            raise ImportError(f"'{name}': module '{module_name}' has no attribute path "
                              f"'{'.'.join(parts[split:])}'") from None
        return obj
    # A bare top-level module name.
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        raise ImportError(f"Cannot import '{name}': no importable module prefix found") from None


def call_func_by_name(*args, func_name: str, **kwargs) -> Any:
    """Look up a function by dotted name and call it with the given arguments."""
    func = get_obj_by_name(func_name)
    if not callable(func):
        raise TypeError(f"'{func_name}' is not callable")
    return func(*args, **kwargs)


def construct_class_by_name(*args, class_name: str, **kwargs) -> Any:
    """Look up a class by dotted name and construct it with the given arguments."""
    return call_func_by_name(*args, func_name=class_name, **kwargs)

# ---------------------------------------------------------------------------------------------
# Cache directory and URL opening.

_cache_dir_override: str | None = None


def set_cache_dir(path: str | None) -> None:
    """Override the cache root for this process (None restores the default lookup)."""
    global _cache_dir_override
    _cache_dir_override = path


def make_cache_dir_path(*paths: str) -> str:
    """Path under the cache root: `set_cache_dir`, else $DNNLIB_CACHE_DIR, else
    $XDG_CACHE_HOME/dnnlib, else ~/.cache/dnnlib."""
    if _cache_dir_override is not None:
        root = _cache_dir_override
    elif 'DNNLIB_CACHE_DIR' in os.environ:
        root = os.environ['DNNLIB_CACHE_DIR']
    elif 'XDG_CACHE_HOME' in os.environ:
        root = os.path.join(os.environ['XDG_CACHE_HOME'], 'dnnlib')
    else:
        root = os.path.join(os.path.expanduser('~'), '.cache', 'dnnlib')
    return os.path.join(root, *paths)


def is_url(obj: Any, allow_file_urls: bool = False) -> bool:
    """True for 'http(s)://host/...' strings (and 'file://...' if allowed)."""
    if not isinstance(obj, str) or '://' not in obj:
        return False
    if allow_file_urls and obj.startswith('file://'):
        return True
    parsed = urllib.parse.urlparse(obj)
    return parsed.scheme in ('http', 'https') and bool(parsed.netloc)


def url_cache_path(url: str, cache_dir: str | None = None) -> str:
    """Where `open_url` keeps (and looks for) the download of `url`: <cache>/<md5 of url>_<file name>."""
    cache_dir = cache_dir if cache_dir is not None else make_cache_dir_path('downloads')
    url_md5 = hashlib.md5(url.encode('utf-8')).hexdigest()
    name = os.path.basename(urllib.parse.urlparse(url).path) or 'download'
    name = re.sub(r'[^0-9a-zA-Z._-]+', '_', name)
    return os.path.join(cache_dir, f'{url_md5}_{name}')


class DownloadError(UserError, OSError):
    """Raised when a URL cannot be fetched; the message says where to place the file instead."""


def open_url(url: str, cache_dir: str | None = None, num_attempts: int = 3, timeout_s: float = 30.0,
             cache: bool = True, return_filename: bool = False) -> Any:
    """Open a local path, a `file://` URL or an `http(s)://` URL as a binary file object.

    Downloads are stored atomically under `url_cache_path(url, cache_dir)` and reused. When the
    network is unreachable, raises one `DownloadError` naming the URL and the cache path where the
    file can be placed by hand. `return_filename=True` returns the local path instead of a file.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f'open_url: expected a non-empty path or URL string, got {url!r}')

    if not is_url(url, allow_file_urls=True):
        if not os.path.isfile(url):
            raise FileNotFoundError(f"File not found: '{url}'")
        return url if return_filename else open(url, 'rb')
    if url.startswith('file://'):
        path = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"File not found: '{path}' (from {url})")
        return path if return_filename else open(path, 'rb')

    cache_path = url_cache_path(url, cache_dir)
    if cache and os.path.isfile(cache_path):
        return cache_path if return_filename else open(cache_path, 'rb')

    if not url_reachable(url):  # Offline: say so at once instead of waiting through retries.
        raise DownloadError(f'Cannot download {url} (offline: {url_host(url)} is unreachable or ${OFFLINE_ENV} is '
                            f'set); fetch the file elsewhere and place it at {cache_path} (or pass a local path '
                            f'instead of the URL)')
    data = _download(url, num_attempts, timeout_s, cache_path)
    if cache:
        os.makedirs(os.path.dirname(cache_path), exist_ok=True)
        with atomic_write_path(cache_path) as tmp_path, open(tmp_path, 'wb') as f:
            f.write(data)
        if return_filename:
            return cache_path
    elif return_filename:
        raise ValueError('open_url: return_filename=True requires cache=True for URLs')
    return io.BytesIO(data)


OFFLINE_ENV = 'DNNLIB_OFFLINE'  # Set to 1: treat every host as unreachable (no network attempts at all).
_reachable: dict[tuple, bool] = {}  # (host, port) -> probe answer, once per process.


def url_host(url: str) -> str:
    return urllib.parse.urlparse(url).hostname or url


def url_reachable(url: str, timeout_s: float = 3.0) -> bool:
    """Can a TCP connection to the host of the http(s) `url` be opened (within `timeout_s`)? One
    quick probe per host and process, so an offline machine is recognised in seconds (not after
    a download's retries); False at once when $DNNLIB_OFFLINE or $HF_HUB_OFFLINE is 1/true.
    Behind an HTTP(S) proxy (https_proxy/http_proxy set) the proxy decides: True."""
    if any(os.environ.get(name, '').strip().lower() in ('1', 'true', 'yes', 'on') for name in (OFFLINE_ENV, 'HF_HUB_OFFLINE')):
        return False
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ('http', 'https') or not parsed.hostname:
        return True
    if urllib.request.getproxies().get(parsed.scheme):
        return True
    key = (parsed.hostname, parsed.port or (443 if parsed.scheme == 'https' else 80))
    if key not in _reachable:
        try:
            socket.create_connection(key, timeout=timeout_s).close()
            _reachable[key] = True
        except OSError:
            _reachable[key] = False
    return _reachable[key]


def _download(url: str, num_attempts: int, timeout_s: float, cache_path: str) -> bytes:
    last_error: Exception | None = None
    for _ in range(max(num_attempts, 1)):
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            if e.code in (401, 403, 404):  # Retrying will not help.
                last_error = e
                break
            last_error = e
        except (urllib.error.URLError, OSError) as e:
            last_error = e
    raise DownloadError(f'Cannot download {url} ({last_error}); if you are offline, fetch the file '
                        f'elsewhere and place it at {cache_path} (or pass a local path instead of the URL)')

# ---------------------------------------------------------------------------------------------
# Atomic file writes: readers see the old file or the complete new one, never a partial one.

# Names of the temporary files below: `.<final name>.<8 hex digits>.tmp` in the final folder.
ATOMIC_TEMP_NAME_RE = re.compile(r'^\..+\.[0-9a-f]{8}\.tmp$')


def _temp_path_beside(path: str) -> str:
    # Same folder as `path`, hence same file system: os.replace onto `path` is atomic.
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.join(folder, f'.{os.path.basename(path)}.{secrets.token_hex(4)}.tmp')


def create_temp_file_beside(path: str) -> str:
    """Create an empty temporary file in the folder of `path` (to be renamed over it) and return
    its path. Its mode is what open() gives a new file (0o666 minus the umask), unlike
    tempfile.mkstemp's 0o600, which would leave the renamed output unreadable to other users."""
    while True:
        tmp = _temp_path_beside(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # Mode filtered by the umask.
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def create_temp_dir_beside(path: str) -> str:
    """Create an empty temporary folder in the folder of `path` (to be renamed over it) and return
    its path; mode 0o777 minus the umask (tempfile.mkdtemp would give 0o700)."""
    while True:
        tmp = _temp_path_beside(path)
        try:
            os.mkdir(tmp, 0o777)
        except FileExistsError:
            continue
        return tmp


@contextlib.contextmanager
def atomic_write_path(path: str, durable: bool = False) -> Iterator[str]:
    """Context manager for writing the file `path` all at once.

    Yields the path of an empty temporary file beside `path` (see `create_temp_file_beside`).
    When the block ends normally that file is renamed over `path`; when it raises, the file is
    removed. A killed process leaves only a temporary file (ATOMIC_TEMP_NAME_RE).

    Args:
        path:    final file path; its folder must exist.
        durable: also fsync the file and its folder, so that the new contents survive a power
                 loss once the block has ended (snapshots).
    """
    tmp = create_temp_file_beside(path)
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDWR)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if durable and hasattr(os, 'O_DIRECTORY'):  # Make the rename itself durable (POSIX only).
        dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)



def write_text_atomic(path: str, text: str, encoding: str = 'utf-8') -> None:
    """Write the text file `path` all at once (see `atomic_write_path`)."""
    with atomic_write_path(path) as tmp, open(tmp, 'wt', encoding=encoding) as f:
        f.write(text)


def write_json_atomic(path: str, value: Any, indent: int | None = 2) -> None:
    """Write `value` as the JSON file `path` all at once; a value JSON cannot hold leaves the old
    file as it was (the text is made before anything is written)."""
    write_text_atomic(path, json.dumps(value, indent=indent) + '\n')


def append_line(path: str, line: str, encoding: str = 'utf-8') -> None:
    """Append one line to the log-like file `path` (log.txt, *.jsonl) in one write call and flush
    it, so a reader or a killed process sees whole lines only (O_APPEND keeps concurrent
    appenders from overwriting each other)."""
    if '\n' in line.rstrip('\n'):
        raise ValueError(f'append_line: expected one line, got {line.count(chr(10))} line breaks')
    with open(path, 'at', encoding=encoding) as f:
        f.write(line.rstrip('\n') + '\n')

# ---------------------------------------------------------------------------------------------
# Errors for the person at the keyboard (interfaces.md section 4).


def run_cli(command, args=None) -> None:
    """Run a click command; turn `UserError` (and click's own usage errors) into a one-line
    message on stderr and exit status 2."""
    import sys

    import click  # Only command lines need click; keep dnnlib importable without it.
    try:
        command.main(args=args, standalone_mode=False)
    except UserError as e:
        print(f'Error: {e}', file=sys.stderr)
        sys.exit(2)
    except click.exceptions.Abort:
        print('Error: aborted', file=sys.stderr)
        sys.exit(1)
    except click.ClickException as e:
        print(f'Error: {e.format_message()}', file=sys.stderr)
        sys.exit(e.exit_code if e.exit_code else 2)
