"""Photo projections running in the background, one at a time, with progress the page polls."""

import dataclasses
import itertools
import threading
import time

from viewer_app.model import RequestError

DEFAULT_PROJECTION_STEPS = 200      # The page's initial step budget (projector.py's default is 1000).
MAX_PROJECTION_STEPS     = 5000     # Largest step budget accepted from the page.

#----------------------------------------------------------------------------

@dataclasses.dataclass
class ProjectionJob:
    """The state of one projection, as /api/project/<id> reports it."""
    job_id:    str
    num_steps: int
    state:     str = 'queued'   # 'queued' | 'running' | 'done' | 'error'
    step:      int = 0          # Steps finished.
    dist:      float = None     # Distance to the target after the last step.
    error:     str = None       # One-line message when state == 'error'.
    started:   float = dataclasses.field(default_factory=time.monotonic)

    def as_dict(self) -> dict:
        return dict(job=self.job_id, photo=self.job_id if self.state == 'done' else None, state=self.state,
            step=self.step, num_steps=self.num_steps, dist=self.dist, error=self.error,
            elapsed_s=round(time.monotonic() - self.started, 3))

def parse_steps(text: str) -> int:
    """The step budget from the page: an integer in [1, MAX_PROJECTION_STEPS]."""
    try:
        steps = int(text)
    except (TypeError, ValueError):
        raise RequestError(f"steps: '{text}' is not an integer; use 1 to {MAX_PROJECTION_STEPS}") from None
    if not 1 <= steps <= MAX_PROJECTION_STEPS:
        raise RequestError(f'steps: {steps} is out of range; use 1 to {MAX_PROJECTION_STEPS}')
    return steps

#----------------------------------------------------------------------------

class ProjectionJobs:
    """Starts projections on a `ViewerModel` in a daemon thread; refuses a second while one runs."""

    def __init__(self, model, max_jobs: int = 32):
        self.model = model
        self.max_jobs = max_jobs        # Finished jobs beyond this many are forgotten, oldest first.
        self._jobs = {}                 # id -> ProjectionJob, in start order.
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, target_uint8, num_steps: int, filename: str = 'photo.png') -> ProjectionJob:
        """Queue a projection of `target_uint8` (uint8 [C, H, W]); HTTP 409 while another runs."""
        with self._lock:
            if any(job.state in ('queued', 'running') for job in self._jobs.values()):
                raise RequestError('a photo is being projected already; wait for it to finish', http_status=409)
            job = ProjectionJob(job_id=f'photo{next(self._ids)}', num_steps=num_steps)
            self._jobs[job.job_id] = job
            for old in list(self._jobs)[:-self.max_jobs]:
                del self._jobs[old]
        thread = threading.Thread(target=self._run, args=(job, target_uint8, filename), daemon=True,
            name=f'viewer-{job.job_id}')
        thread.start()
        return job

    def _run(self, job: ProjectionJob, target_uint8, filename: str) -> None:
        def progress(step, num_steps, dist):
            job.step, job.dist = step, float(dist)
        job.state = 'running'
        try:
            self.model.project_photo(job.job_id, target_uint8, job.num_steps, filename=filename, progress=progress)
        except Exception as err:  # Reported to the page; the server keeps serving.
            first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
            job.error = f'projection failed: {type(err).__name__}: {first_line}'
            job.state = 'error'
            return
        job.state = 'done'

    def status(self, job_id: str) -> dict:
        job = self._jobs.get(job_id)
        if job is None:
            raise RequestError(f"projection '{job_id}' is unknown; start one with POST /api/project", http_status=404)
        return job.as_dict()

#----------------------------------------------------------------------------
