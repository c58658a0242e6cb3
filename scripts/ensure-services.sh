#!/usr/bin/env bash
# Make sure RabbitMQ and Redis answer on loopback: start them if installed but stopped, install them
# (Debian packages) if missing and we may, otherwise say what to do. Also creates the vhosts given
# as arguments (if any) with full permissions for guest, for the test suite, the font PDF
# reports use, and ffmpeg for the media worker's video jobs.
set -euo pipefail

AMQP_PORT=${OFFLOAD_AMQP_PORT:-5672}
REDIS_PORT=${OFFLOAD_REDIS_PORT:-6379}
VHOSTS=("$@")

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds
  for _ in $(seq 1 "$2"); do port_open "$1" && return 0; sleep 1; done
  return 1
}

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo ">> installing $* (Debian packages)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null || {
      apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
  else
    return 1
  fi
}

ensure_redis() {
  port_open "$REDIS_PORT" && return 0
  command -v redis-server >/dev/null || apt_install redis-server || {
    echo "Redis is not installed. Install it (apt-get install redis-server) or run: docker compose up redis" >&2; exit 1; }
  echo ">> starting Redis on 127.0.0.1:$REDIS_PORT"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/offload.log
  wait_port "$REDIS_PORT" 20 || { echo "Redis did not start; see /var/log/redis/offload.log" >&2; exit 1; }
}

ensure_rabbitmq() {
  port_open "$AMQP_PORT" && return 0
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server || {
    echo "RabbitMQ is not installed. Install it (apt-get install rabbitmq-server) or run: docker compose up rabbitmq" >&2; exit 1; }
  echo ">> starting RabbitMQ on 127.0.0.1:$AMQP_PORT (first boot can take 30 s)"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_port "$AMQP_PORT" 90 || { echo "RabbitMQ did not start; see /var/log/rabbitmq/" >&2; exit 1; }
}

ensure_vhosts() {
  [ "${#VHOSTS[@]}" -gt 0 ] || return 0
  command -v rabbitmqctl >/dev/null || { echo "rabbitmqctl not found; create vhosts ${VHOSTS[*]} for guest by hand" >&2; exit 1; }
  local existing
  existing=$(rabbitmqctl -q list_vhosts 2>/dev/null || true)
  for vhost in "${VHOSTS[@]}"; do
    grep -qx "$vhost" <<<"$existing" || rabbitmqctl -q add_vhost "$vhost" >/dev/null
    rabbitmqctl -q set_permissions -p "$vhost" guest ".*" ".*" ".*" >/dev/null
  done
}

ensure_fonts() { # PDF reports draw UTF-8 text with DejaVu Sans (OFFLOAD_REPORT_FONT)
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] && return 0
  apt_install fonts-dejavu-core || echo "DejaVu Sans is missing (apt-get install fonts-dejavu-core); PDF text falls back to Latin-1" >&2
}

ensure_ffmpeg() { # the media worker's video jobs run ffmpeg and ffprobe (docs/video.md)
  command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null && return 0
  apt_install ffmpeg || echo "ffmpeg is missing (apt-get install ffmpeg); video jobs and their tests cannot run" >&2
}

ensure_test_tools() { # promtool and prometheus (monitoring tests), Chromium (admin page), Go (wire publisher)
  [ "${#VHOSTS[@]}" -gt 0 ] || return 0
  command -v promtool >/dev/null || apt_install prometheus ||
    echo "prometheus is missing (apt-get install prometheus); the monitoring tests cannot run" >&2
  command -v chromium >/dev/null || apt_install chromium ||
    echo "chromium is missing (apt-get install chromium); the admin page's browser test cannot run" >&2
  # Go and amqp091-go for the Go wire publisher the tests build (tests/wire/go); Node.js is on the machine
  { command -v go >/dev/null && [ -d /usr/share/gocode/src/github.com/rabbitmq/amqp091-go ]; } ||
    apt_install golang-go golang-github-rabbitmq-amqp091-go-dev ||
    echo "Go or amqp091-go is missing (apt-get install golang-go golang-github-rabbitmq-amqp091-go-dev); the Go publisher's tests cannot run" >&2
}

ensure_redis
ensure_rabbitmq
ensure_vhosts
ensure_fonts
ensure_ffmpeg
ensure_test_tools
