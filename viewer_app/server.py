"""The viewer's HTTP server: the hand-written page and a small fixed JSON/PNG interface.

Interface (checks and scripts rely on it):
- `GET /api/domains` -> `{"domains": [{"name", "dimension"}, ...], "resolution": R}`.
- `GET /api/render?seed=S&trunc=T&domains=NAME:STRENGTH,...` (or `photo=ID` instead of `seed`) ->
  `image/png`; the header `X-Viewer-Command` holds the command of our other tools that writes it.
- `GET /api/info` -> what the page needs besides the domains (network, subspace distance, ranges).
- `POST /api/project?steps=N` with an image as the body -> `{"job": ID, ...}`; then
  `GET /api/project/ID` -> progress, and `photo=ID` renders the projected photo once `state` is 'done'.
- Bad parameters -> HTTP 400 (uploads: also 411/413/415, a busy projector 409) with a one-line
  JSON error `{"error": "..."}`, never a 500.

Built on the standard library's `http.server` (one thread per request; the model's lock makes
renders one at a time). Nothing is served from disk except the package's own page files.
"""

import http.server
import importlib.resources
import ipaddress
import io
import json
import re
import sys
import traceback
import urllib.parse

import dnnlib
from torch_utils import image_utils
from viewer_app import jobs, uploads
from viewer_app.model import RequestError

STATIC_FILES = {    # URL path -> (package file, content type)
    '/':           ('index.html', 'text/html; charset=utf-8'),
    '/viewer.js':  ('viewer.js', 'text/javascript; charset=utf-8'),
    '/viewer.css': ('viewer.css', 'text/css; charset=utf-8'),
}
# Everything the page loads comes from this server (blob: = rendered PNGs held by the page).
LOOPBACK_NAMES = ('127.0.0.1', 'localhost', '::1')
CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' blob:; connect-src 'self'; object-src 'none'"

#----------------------------------------------------------------------------

def read_static_files() -> dict:
    """URL path -> (bytes, content type) of the page files shipped in viewer_app/static."""
    folder = importlib.resources.files('viewer_app') / 'static'
    return {path: ((folder / name).read_bytes(), kind) for path, (name, kind) in STATIC_FILES.items()}

def png_bytes(image_hwc) -> bytes:
    """uint8 [H, W, C] -> PNG file bytes."""
    buffer = io.BytesIO()
    image_utils.to_pil(image_hwc).save(buffer, format='PNG')
    return buffer.getvalue()

def _safe_filename(text: str) -> str:
    """The uploaded file's base name for the displayed command line (letters, digits, ._- only)."""
    name = urllib.parse.unquote(text or '').replace('\\', '/').rsplit('/', 1)[-1]
    name = re.sub(r'[^A-Za-z0-9._-]', '_', name)[:100].lstrip('.')
    return name or 'photo.png'

#----------------------------------------------------------------------------

class ViewerHandler(http.server.BaseHTTPRequestHandler):
    """Routes one request to the server's model and job list."""
    server_version = 'DomainExpansionViewer/1.0'

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        if self.server.verbose:
            super().log_message(format, *args)

    # --- replies ----------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, headers: dict = None) -> None:
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Cache-Control', 'no-store')
        self.send_header('X-Content-Type-Options', 'nosniff')
        self.send_header('Content-Security-Policy', CONTENT_SECURITY_POLICY)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def _send_json(self, status: int, obj: dict) -> None:
        self._send(status, (json.dumps(obj) + '\n').encode('utf-8'), 'application/json')

    def _send_error_json(self, status: int, message: str) -> None:
        one_line = ' '.join(str(message).split())
        self._send_json(status, dict(error=one_line))

    def _dispatch(self, routes: dict) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if not self.server.host_allowed(self.headers.get('Host')):
            self._send_error_json(403, f"Host '{self.headers.get('Host')}' is not served; open {self.server.url}")
            return
        try:
            for pattern, handler in routes.items():
                match = re.fullmatch(pattern, url.path)
                if match:
                    handler(query, *match.groups())
                    return
            self._send_error_json(404, f'no such page: {url.path}; see / or /api/domains')
        except RequestError as err:
            self._send_error_json(err.http_status, str(err))
        except dnnlib.util.UserError as err:
            self._send_error_json(400, str(err))
        except (BrokenPipeError, ConnectionResetError):
            pass                                    # The page went away (e.g. a newer slider position).
        except Exception as err:                    # A bug: log it in full, answer one line.
            traceback.print_exc(file=sys.stderr)
            self._send_error_json(500, f'internal error: {type(err).__name__}: {err}')

    def do_GET(self):
        self._dispatch({
            r'/api/domains': self._get_domains,
            r'/api/info': self._get_info,
            r'/api/render': self._get_render,
            r'/api/project/([A-Za-z0-9]+)': self._get_projection,
            r'/|/viewer\.js|/viewer\.css': self._get_static,
            r'/favicon\.ico': self._get_favicon,
        })

    def do_POST(self):
        self._dispatch({r'/api/project': self._post_project})

    # --- routes -----------------------------------------------------------------------------

    def _get_static(self, query):
        body, kind = self.server.static_files[urllib.parse.urlsplit(self.path).path]
        self._send(200, body, kind)

    def _get_favicon(self, query):
        self._send(204, b'', 'image/x-icon')                    # No icon (and no 404 in the browser log).

    def _get_domains(self, query):
        self._send_json(200, dict(domains=self.server.model.domains(), resolution=self.server.model.resolution))

    def _get_info(self, query):
        info = self.server.model.info()
        info.update(default_projection_steps=jobs.DEFAULT_PROJECTION_STEPS,
            max_projection_steps=jobs.MAX_PROJECTION_STEPS, max_upload_bytes=uploads.MAX_UPLOAD_BYTES)
        self._send_json(200, info)

    def _get_render(self, query):
        model = self.server.model
        request = model.parse_request(query)
        body = png_bytes(model.render(request))
        self._send(200, body, 'image/png', {'X-Viewer-Command': model.command_line(request)})

    def _get_projection(self, query, job_id):
        self._send_json(200, self.server.jobs.status(job_id))

    def _post_project(self, query):
        unknown = sorted(set(query) - {'steps'})
        if unknown:
            raise RequestError(f"unknown parameter '{unknown[0]}'; valid: steps")
        steps = jobs.parse_steps(query.get('steps', [str(jobs.DEFAULT_PROJECTION_STEPS)])[-1])
        size = uploads.check_upload_headers(self.headers.get('Content-Type'), self.headers.get('Content-Length'))
        data = self.rfile.read(size)
        model = self.server.model
        target = uploads.load_upload(data, model.resolution, int(model.G.img_channels))
        job = self.server.jobs.start(target, steps, filename=_safe_filename(self.headers.get('X-Filename')))
        self._send_json(202, job.as_dict())

#----------------------------------------------------------------------------

class ViewerServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server bound to (host, port) that serves one `ViewerModel`."""
    daemon_threads = True

    def __init__(self, model, host: str = '127.0.0.1', port: int = 7860, verbose: bool = False):
        self.model = model
        self.jobs = jobs.ProjectionJobs(model)
        self.static_files = read_static_files()
        self.verbose = verbose
        try:
            super().__init__((host, port), ViewerHandler)
        except OSError as err:
            raise dnnlib.util.UserError(f'--host {host} --port {port}: cannot listen there ({err.strerror}); '
                f'pick another --port (0 = any free port) or a local --host') from None

    def host_allowed(self, host_header: str) -> bool:
        """Bound to a loopback address, answer only requests addressed to a loopback name: a web
        page elsewhere cannot reach the viewer by pointing its own domain name at 127.0.0.1."""
        if not ipaddress.ip_address(self.server_address[0]).is_loopback:
            return True
        hostname = urllib.parse.urlsplit(f'//{host_header or ""}').hostname or ''
        return hostname in LOOPBACK_NAMES

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f'http://{host}:{port}/'

#----------------------------------------------------------------------------
