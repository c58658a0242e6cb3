#!/usr/bin/env bash
# `make up`: run the API, the three workers and the scheduler as local processes in the foreground,
# supervised (a process that dies is started again).
set -euo pipefail
mkdir -p .offload
if [ -z "${OFFLOAD_API_KEYS:-}" ]; then
  [ -s .offload/dev-key ] || python3 -c 'import secrets; print("dev_" + secrets.token_urlsafe(24))' > .offload/dev-key
  key=$(cat .offload/dev-key)
  export OFFLOAD_API_KEYS="$key=dev:admin"
  cp .offload/dev-key .offload/prometheus-key  # deploy/prometheus/prometheus.yml scrapes /metrics with it
  cat <<MSG

  Offload is starting on http://127.0.0.1:8000   (API docs: http://127.0.0.1:8000/docs)
  Development API key (tenant 'dev', role admin):  $key

  Try:  curl -s -X POST http://127.0.0.1:8000/v1/jobs -H "Authorization: Bearer $key" \\
          -H 'Content-Type: application/json' -d '{"type":"system.sleep","payload":{"ms":3000}}'
  Then: curl -N <events_url from the answer> -H "Authorization: Bearer $key"
  Or:   make demo          (Ctrl-C here stops everything)

MSG
fi
export OFFLOAD_LOG_FORMAT=${OFFLOAD_LOG_FORMAT:-text}
# Worker metrics (Dramatiq's exposition server, one port per service; see Procfile.dev) stay on
# loopback, and each run starts from empty counters.
export dramatiq_prom_host=127.0.0.1
rm -rf .offload/metrics
export OFFLOAD_PUBLIC_URL=${OFFLOAD_PUBLIC_URL:-http://127.0.0.1:8000}
export OFFLOAD_URL_ALLOW_HOSTS=${OFFLOAD_URL_ALLOW_HOSTS:-127.0.0.1,localhost}
# Procfile.dev's processes, each restarted with backoff if it dies; Ctrl-C or `make down` stops them.
exec python3 -m uv run --frozen --all-packages python -m offload.supervisor -f Procfile.dev --pid-file .offload/supervisor.pid
