"""gunicorn settings for both HTTP APIs, from the environment (``--bind`` comes from the caller)."""

from runtime.settings import Settings

_settings = Settings.from_env()

workers = _settings.web_workers
threads = _settings.web_threads
worker_class = "gthread"
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
# Two gunicorn masters run side by side; the default control socket path would collide.
control_socket_disable = True
