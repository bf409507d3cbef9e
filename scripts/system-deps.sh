#!/usr/bin/env bash
# Install the system packages the test suite needs (headless Chromium and its
# driver for the web view's browser test; podman, podman-compose, runc and
# debootstrap for the container check), when missing and when we may.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# the container check (tests/test_deployment_files.py, scripts/check_containers.sh):
# podman with runc, and debootstrap for a base image when no registry answers
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v podman-compose >/dev/null 2>&1 || need+=(podman-compose)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "system-deps: cannot install ${need[*]} (not root, no sudo)" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq "${need[@]}" >/dev/null
