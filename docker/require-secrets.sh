#!/bin/sh
# Entrypoint guard: refuse to start with a secret that is empty, still the .env.example
# placeholder, or too short; then run the container's command.
#
#   RECON_REQUIRED_SECRETS="DAGSTER_POSTGRES_PASSWORD RECON_TRACKER_URL" require-secrets.sh CMD...
#
# Only names are ever printed, never values. POSIX sh: it runs in the Debian-based Python and
# PostgreSQL images and in the Alpine-based Caddy image alike.
set -eu

placeholder="change-me"   # every secret in docker/.env.example holds this
min_length="${RECON_MIN_SECRET_LENGTH:-16}"
failed=""
case "$min_length" in '' | *[!0-9]*) echo "require-secrets: RECON_MIN_SECRET_LENGTH must be a number" >&2; exit 64 ;; esac

for name in ${RECON_REQUIRED_SECRETS:-}; do
  case "$name" in
    *[!A-Za-z0-9_]* | [0-9]*) echo "require-secrets: '$name' is not a variable name" >&2; exit 64 ;;
  esac
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    echo "refusing to start: $name is empty; set it in docker/.env" >&2
    failed=1
  elif printf '%s' "$value" | grep -qi -- "$placeholder"; then
    echo "refusing to start: $name still holds the example value from .env.example; set a real secret in docker/.env" >&2
    failed=1
  elif [ "${#value}" -lt "$min_length" ]; then
    echo "refusing to start: $name is shorter than $min_length characters; use a longer secret" >&2
    failed=1
  fi
done
unset value

[ -z "$failed" ] || exit 78   # EX_CONFIG
exec "$@"
