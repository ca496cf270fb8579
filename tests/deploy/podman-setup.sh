#!/usr/bin/env bash
# Makes this machine able to build and run the exporter's image without a Docker engine or a registry:
# Debian's podman (with runc), and a local base image bootstrapped from Debian's own packages.
#
#   tests/deploy/podman-setup.sh [BASE_IMAGE]      (default localhost/debian:bookworm-python3)
#
# - installs podman, runc and debootstrap from Debian when missing (as root, with apt);
# - writes /etc/containers/containers.conf with `default_ulimits = []` when there is none (sandboxes
#   that refuse to raise rlimits make every container fail at start with podman's default ulimits);
# - builds BASE_IMAGE unless it already exists (podman's image store is the cache between runs):
#   `debootstrap --variant=minbase bookworm` plus python3-venv and python-is-python3 (the Dockerfile
#   needs `python`; python:3.11-slim has it, minbase does not), trimmed of docs, locales and apt
#   caches, trusting the host's extra CAs (/usr/local/share/ca-certificates: a TLS-inspecting proxy
#   between the build and PyPI), then `podman import`.
# Run podman afterwards as `podman --runtime runc --cgroup-manager cgroupfs ...` (crun refuses a hybrid
# cgroup layout; cgroupfs needs no systemd).
set -euo pipefail
base=${1:-localhost/debian:bookworm-python3}
podman=(podman --runtime runc --cgroup-manager cgroupfs)

need=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "podman-setup: missing ${need[*]}; install them (Debian: apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "podman-setup: installing ${need[*]} from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin:/sbin

conf=/etc/containers/containers.conf
if [ ! -e "$conf" ] && [ -z "${CONTAINERS_CONF:-}" ]; then
  mkdir -p "$(dirname "$conf")"
  printf '[containers]\n# the sandbox refuses the rlimits podman sets by default\ndefault_ulimits = []\n' > "$conf"
fi

if "${podman[@]}" image exists "$base"; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "podman-setup: building $base needs root (debootstrap)" >&2
  exit 1
fi
work=$(mktemp -d /var/tmp/dydx-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
echo "podman-setup: bootstrapping $base (about a minute)" >&2
debootstrap --variant=minbase --include=python3-venv,python-is-python3,ca-certificates \
  bookworm "$rootfs" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
fi
tar -C "$rootfs" -c . | "${podman[@]}" import --quiet - "$base" >/dev/null
echo "podman-setup: $base ready" >&2
