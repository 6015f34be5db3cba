#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use (idempotent; needs root or sudo):
#   wrk                                   load generator of the HTTP benchmarks
#   golang-go                             builds the Go groupcache nodes (interop tests, benchmarks)
#   golang-github-golang-groupcache-dev   golang/groupcache's sources, for those builds
#   etcd-server                           etcd, for the etcd membership tests and `make run MEMBERSHIP=etcd`
#   iproute2                              `ip netns`, for the gossip partition test
#   gcc, python3-dev                      compile shoal's C extension (the tests check it is built)
#   chromium                              the headless browser of the dashboard tests (Playwright
#                                         drives it; it downloads no browser of its own)
# When everything is there it only checks and exits, without touching apt.
set -euo pipefail
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/golang/groupcache ] ||
    need+=(golang-github-golang-groupcache-dev)
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need+=(etcd-server)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ||
    need+=(chromium)
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || need+=(gcc)
"${PYTHON:-python3}" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ||
    need+=(python3-dev)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: not a Debian system; install by hand: ${need[*]}" >&2
    exit 0
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "system-deps: installing ${need[*]}" >&2
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
