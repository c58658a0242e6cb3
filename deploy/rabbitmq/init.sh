#!/bin/sh
# One-shot set-up of the broker for compose, through the management API (curlimages/curl):
# Offload's vhost, an application user confined to it (no tags: it cannot manage anything), and the
# backpressure policy (reliability-security.md D10): a full queue refuses publishes, which the API
# turns into a fast 503, instead of growing until a memory alarm blocks every publisher.
set -eu
api="http://rabbitmq:15672/api"
admin="${RABBITMQ_DEFAULT_USER}:${RABBITMQ_DEFAULT_PASS}"
vhost="${OFFLOAD_RABBITMQ_VHOST:-offload}"
put() { curl -fsS -u "$admin" -H "content-type: application/json" -X PUT "$api/$1" -d "$2"; }

put "vhosts/$vhost" '{"description": "Offload"}'
put "users/offload" "{\"password\": \"${OFFLOAD_RABBITMQ_PASSWORD}\", \"tags\": \"\"}"
# Configure, write and read only Offload's queues (Q, Q.DQ, Q.XQ) and the default exchange.
put "permissions/$vhost/offload" \
  '{"configure": "^(email|media|reports|webhooks|push|system)(\\.DQ|\\.XQ)?$", "write": "^(amq\\.default|(email|media|reports|webhooks|push|system)(\\.DQ|\\.XQ)?)$", "read": "^(email|media|reports|webhooks|push|system)(\\.DQ|\\.XQ)?$"}'
put "policies/$vhost/backpressure" \
  "{\"pattern\": \"^(email|media|reports|webhooks|push|system)$\", \"apply-to\": \"queues\", \"definition\": {\"max-length\": ${OFFLOAD_QUEUE_MAX_LENGTH:-1000000}, \"overflow\": \"reject-publish\"}}"
echo "RabbitMQ: vhost $vhost, user offload, backpressure policy set."
