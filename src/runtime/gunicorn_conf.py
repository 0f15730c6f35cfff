"""gunicorn settings for both HTTP APIs, from the environment (``--bind`` comes from the caller).

Timeouts, and what they protect (README, "Slow clients"):
- a request's head and body must arrive within ``LEDGER_WEB_REQUEST_TIMEOUT_SECONDS`` (10 s),
  read by the worker's main loop, not by a thread (``runtime.web_worker``);
- a kept-alive connection may idle ``keepalive`` seconds between requests;
- ``timeout``: a worker whose main loop stops answering the master is restarted;
- ``graceful_timeout``: how long a stopping worker finishes what it has.
"""

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
