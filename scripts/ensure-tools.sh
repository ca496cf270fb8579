#!/usr/bin/env bash
# Installs the real Prometheus and Alertmanager (and docker-compose, to validate the compose file, and
# VictoriaMetrics with vmagent and vmalert, for the scaling-out test) from
# Debian when they are missing.
# Debian names the Alertmanager binary `prometheus-alertmanager`; tests look for both names.
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
{ command -v alertmanager >/dev/null 2>&1 || command -v prometheus-alertmanager >/dev/null 2>&1; } \
  && command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
# Validates docker-compose.yml (`docker-compose config -q`) on machines without a Docker engine.
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
# VictoriaMetrics single node, vmagent and vmalert: the scaling-out end-to-end test (tests/scaling/).
{ command -v victoria-metrics && command -v vmagent && command -v vmalert; } >/dev/null 2>&1 \
  || need+=(victoria-metrics)
# `dydx-exporter top` is tested the way a user sees it: in a terminal (tests/top/ read a tmux pane).
command -v tmux >/dev/null 2>&1 || need+=(tmux)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-tools: missing ${need[*]}; install them (Debian: apt-get install ${need[*]}) or put them on PATH" >&2
  exit 1
fi
echo "ensure-tools: installing ${need[*]} from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps node-exporter and friends out; policy-rc.d stops the packages from
# starting their own system services on ports the tests want.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
