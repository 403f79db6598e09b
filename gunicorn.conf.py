"""gunicorn settings for production and `make run` (values overridable by GUNICORN_* env)."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:5000")
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 20
max_requests = 2000
max_requests_jitter = 200
preload_app = False
# gunicorn >= 25 opens a control socket under ~/.gunicorn by default; we do not use it.
control_socket_disable = True
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
