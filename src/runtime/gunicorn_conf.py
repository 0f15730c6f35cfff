"""gunicorn settings for both HTTP APIs, from the environment (``--bind`` comes from the caller).

Timeouts, and what they protect (README, "Slow clients"):
- a request's head and body must arrive within ``LEDGER_WEB_REQUEST_TIMEOUT_SECONDS`` (10 s),
  read by the worker's main loop, not by a thread (``runtime.web_worker``);
- a kept-alive connection may idle ``keepalive`` seconds between requests;
- ``timeout``: a worker whose main loop stops answering the master is restarted;
- ``graceful_timeout``: how long a stopping worker finishes what it has.
"""

import os
import shutil
import tempfile
from typing import Any

from runtime.settings import Settings

_settings = Settings.from_env()

workers = _settings.web_workers
threads = _settings.web_threads
worker_class = "runtime.web_worker.BufferingThreadWorker"
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
# Two gunicorn masters run side by side; the default control socket path would collide.
control_socket_disable = True

# Prometheus multi-process mode (runtime.metrics): a fresh directory per master (inside
# PROMETHEUS_MULTIPROC_DIR if one is given, so two masters never share one and no old
# files are read), set before any worker imports prometheus_client; files of dead
# workers marked, the directory removed on exit.
_metrics_dir = tempfile.mkdtemp(prefix="ledger-metrics-", dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def on_exit(server: Any) -> None:
    shutil.rmtree(_metrics_dir, ignore_errors=True)
