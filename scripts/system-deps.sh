#!/usr/bin/env bash
# The system services the test suite uses, installed and started idempotently:
# Docker (engine for the service's sandbox), Redis (the distributed queue), debootstrap (to
# build base images without a registry). Needs root; without root it says what is missing.
set -euo pipefail
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v redis-server >/dev/null || need+=(redis-server)
command -v debootstrap >/dev/null || need+=(debootstrap)
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "system-deps: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
    exit 0
  fi
  echo "system-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [[ $(id -u) -eq 0 ]] && ! docker info >/dev/null 2>&1; then
  echo "system-deps: starting dockerd"
  mkdir -p /var/log
  nohup dockerd >/var/log/dlgate-dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "system-deps: dockerd did not start; see /var/log/dlgate-dockerd.log" >&2; exit 1; }
fi
echo "system-deps: ok ($(docker --version 2>/dev/null || echo 'no docker'); $(redis-server --version 2>/dev/null | cut -d' ' -f3 || echo 'no redis'))"
