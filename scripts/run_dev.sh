#!/usr/bin/env bash
# Start the web app and the worker together; Ctrl-C (or either one exiting) stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv/bin
PORT=${TRACKER_PORT:-5000}
trap 'trap - EXIT INT TERM; kill -- $(jobs -p) 2>/dev/null || true; wait || true' EXIT INT TERM
"$VENV/flask" --app wsgi tracker worker &
# SQLite (the default) is the documented single-process mode: one web process, threads only.
workers=1
case "${TRACKER_DATABASE_URL:-sqlite}" in postgresql*) workers=${GUNICORN_WORKERS:-2} ;; esac
GUNICORN_BIND="127.0.0.1:$PORT" GUNICORN_WORKERS=$workers "$VENV/gunicorn" -c gunicorn.conf.py \
  --access-logfile /dev/null wsgi:app &
sleep 2
echo
echo "  Tracker running at http://127.0.0.1:$PORT/  (Ctrl-C stops web and worker)"
echo
wait -n
