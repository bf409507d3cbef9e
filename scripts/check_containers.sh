#!/usr/bin/env bash
# Build the doozertw image (Dockerfile), start the 3-node cluster of
# compose.yaml, write through one node's HTTP API and read it back through
# the two others, restart the cluster to see the data survive in the
# volumes, and tear everything down (volumes included).
#
#   scripts/check_containers.sh            # exit 0: passed; 1: failed;
#                                          # 77: no container runtime can run here
#
# Runtime: docker with a reachable engine, else podman with podman-compose
# (CONTAINER_RUNTIME=docker|podman chooses). When podman cannot start a
# container with its defaults (seen on this project's machines: crun refuses
# cgroup v1 hybrid mode, and raising RLIMIT_NOFILE/NPROC is not permitted),
# the script retries with runc and lowered ulimits through a private
# CONTAINERS_CONF, and says so.
#
# Base image: BASE_IMAGE if set, else python:3.11-slim if it is present or
# can be pulled, else (no registry reachable) a local Debian bookworm image
# with python3.11 made by debootstrap and kept as localhost/doozer-base:bookworm
# (the host's CA bundle is copied in, so pip can reach the package index
# through a TLS-intercepting proxy).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SKIP=77
LOCAL_BASE=localhost/doozer-base:bookworm
IMAGE=${DOOZER_CHECK_IMAGE:-localhost/doozertw:check}
PROJECT=doozer-check-$$
WORK=$(mktemp -d /tmp/doozer-containers.XXXXXX)
RT=
COMPOSE=()

say() { printf 'check_containers: %s\n' "$*" >&2; }
skip() { say "SKIP: $*"; exit "$SKIP"; }
fail() { say "FAIL: $*"; exit 1; }

# -- choosing a runtime ---------------------------------------------------------------

probe() {  # probe IMAGE: can the runtime start a container of IMAGE?
    "$RT" run --rm "$1" true >"$WORK/probe.log" 2>&1
}

podman_compat() {
    # runc (crun refuses cgroup v1 hybrid mode) and ulimits not above this
    # shell's hard limits (raising them needs CAP_SYS_RESOURCE)
    command -v runc >/dev/null || return 1
    local nofile
    nofile=$(ulimit -Hn)
    [ "$nofile" = unlimited ] && nofile=1048576
    cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
    export CONTAINERS_CONF="$WORK/containers.conf"
}

choose_runtime() {
    local want=${CONTAINER_RUNTIME:-}
    if [ -z "$want" ] || [ "$want" = docker ]; then
        if command -v docker >/dev/null && docker info >/dev/null 2>&1 \
                && docker compose version >/dev/null 2>&1; then
            RT=docker COMPOSE=(docker compose)
            return
        fi
        [ "$want" = docker ] && skip "docker: no engine answers (docker info failed)"
    fi
    command -v podman >/dev/null || skip "no docker engine and no podman (apt-get install podman podman-compose runc)"
    RT=podman
    if command -v podman-compose >/dev/null; then
        COMPOSE=(podman-compose)
    elif podman compose version >/dev/null 2>&1; then
        COMPOSE=(podman compose)
    else
        skip "podman without podman-compose (apt-get install podman-compose)"
    fi
    podman info >/dev/null 2>&1 || skip "podman info failed: $(podman info 2>&1 | tail -1)"
}

# -- the base image --------------------------------------------------------------------

local_base() {
    if "$RT" image exists "$LOCAL_BASE" 2>/dev/null \
            || "$RT" image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
        return
    fi
    command -v debootstrap >/dev/null \
        || skip "python:3.11-slim cannot be pulled and debootstrap is missing (apt-get install debootstrap)"
    say "python:3.11-slim cannot be pulled: building $LOCAL_BASE with debootstrap (about 2 minutes)"
    local rootfs="$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
        >"$WORK/debootstrap.log" 2>&1 || { tail -5 "$WORK/debootstrap.log" >&2; fail "debootstrap"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
        cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    fi
    tar -C "$rootfs" -c . | "$RT" import --change 'CMD ["/bin/bash"]' - "$LOCAL_BASE" >/dev/null
    rm -rf "$rootfs"
}

choose_base() {
    if [ -n "${BASE_IMAGE:-}" ]; then
        return
    fi
    if "$RT" image inspect python:3.11-slim >/dev/null 2>&1 \
            || timeout 60 "$RT" pull -q python:3.11-slim >/dev/null 2>&1; then
        BASE_IMAGE=python:3.11-slim
    else
        local_base
        BASE_IMAGE=$LOCAL_BASE
    fi
}

# -- the cluster -----------------------------------------------------------------------

free_ports() {  # six free loopback TCP ports
    python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

compose() { (cd "$WORK/project" && "${COMPOSE[@]}" -p "$PROJECT" "$@"); }

cleanup() {
    local status=$?
    if [ -d "$WORK/project" ] && [ ${#COMPOSE[@]} -gt 0 ]; then
        if [ "$status" != 0 ] && [ "$status" != "$SKIP" ]; then
            say "logs of the cluster:"
            compose logs >&2 2>&1 | tail -60 >&2 || true
        fi
        compose down -v >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

http() {  # http METHOD PORT PATH [BODY]: prints "STATUS BODY"
    python3 - "$@" <<'EOF'
import sys, urllib.request, urllib.error
method, port, path = sys.argv[1:4]
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
if body is not None:
    request.add_header("Content-Type", "application/octet-stream")
try:
    with urllib.request.urlopen(request, timeout=5) as answer:
        print(answer.status, answer.read().decode("utf-8", "replace"))
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode("utf-8", "replace"))
except OSError as e:
    print(0, e)
EOF
}

wait_ready() {  # wait_ready PORT...: every node's /readyz answers 200 (120 s at most)
    local deadline=$((SECONDS + 120)) port answer
    for port in "$@"; do
        while :; do
            answer=$(http GET "$port" /readyz)
            [ "${answer%% *}" = 200 ] && break
            [ $SECONDS -ge $deadline ] && fail "node on web port $port not ready: $answer"
            sleep 1
        done
    done
}

read_back() {  # read_back PORT PATH VALUE: the node serves VALUE at PATH (20 s at most)
    local deadline=$((SECONDS + 20)) answer
    while :; do
        answer=$(http GET "$1" "/v1/keys$2")
        case $answer in
            200*"\"value\":\"$3\""*) return ;;
        esac
        [ $SECONDS -ge $deadline ] && fail "web port $1 $2: $answer (wanted $3)"
        sleep 0.5
    done
}

main() {
    choose_runtime
    say "runtime: $RT, compose: ${COMPOSE[*]}"
    choose_base
    if ! probe "$BASE_IMAGE"; then
        say "$RT cannot start a container with its defaults: $(tail -1 "$WORK/probe.log")"
        [ "$RT" = podman ] && podman_compat && say "retrying with runc and lowered ulimits"
        probe "$BASE_IMAGE" || skip "$RT cannot run containers here: $(tail -1 "$WORK/probe.log")"
    fi
    say "building $IMAGE on $BASE_IMAGE"
    "$RT" build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" "$ROOT" >"$WORK/build.log" 2>&1 \
        || { tail -30 "$WORK/build.log" >&2; fail "image build"; }

    local uid
    uid=$("$RT" run --rm --entrypoint id "$IMAGE" -u)
    [ "$uid" != 0 ] || fail "the image runs as root"

    mkdir -p "$WORK/project/contrib/compose"
    cp "$ROOT/compose.yaml" "$WORK/project/"
    cp "$ROOT/contrib/compose/cluster.yaml" "$WORK/project/contrib/compose/"
    head -c 32 /dev/urandom | base64 >"$WORK/project/peer-secret"
    chmod 0400 "$WORK/project/peer-secret"
    chown 10001 "$WORK/project/peer-secret" 2>/dev/null || chmod 0444 "$WORK/project/peer-secret"

    local ports
    read -r -a ports <<<"$(free_ports)"
    export DOOZER_IMAGE=$IMAGE DOOZER_BASE_IMAGE=$BASE_IMAGE
    export N1_WEB_PORT=${ports[0]} N2_WEB_PORT=${ports[1]} N3_WEB_PORT=${ports[2]}
    export N1_CLIENT_PORT=${ports[3]} N2_CLIENT_PORT=${ports[4]} N3_CLIENT_PORT=${ports[5]}
    local webs=("$N1_WEB_PORT" "$N2_WEB_PORT" "$N3_WEB_PORT")

    say "starting the cluster (project $PROJECT, web ports ${webs[*]})"
    compose up -d --no-build >"$WORK/up.log" 2>&1 || { tail -30 "$WORK/up.log" >&2; fail "compose up"; }
    wait_ready "${webs[@]}"

    local value="written-through-n1-$$" answer
    answer=$(http PUT "$N1_WEB_PORT" /v1/keys/check/containers "$value")
    [ "${answer%% *}" = 200 ] || fail "PUT through n1: $answer"
    read_back "$N2_WEB_PORT" /check/containers "$value"
    read_back "$N3_WEB_PORT" /check/containers "$value"
    say "written through n1, read through n2 and n3"

    # SIGTERM to the three at once (docker compose stops in parallel;
    # podman-compose 1.0.3 one by one, with 10 s before SIGKILL)
    local name code ids=()
    for name in n1 n2 n3; do
        ids+=("$(container_of "$name")")
    done
    "$RT" stop -t 60 "${ids[@]}" >"$WORK/stop.log" 2>&1 \
        || { tail -20 "$WORK/stop.log" >&2; fail "stopping the nodes"; }
    for name in n1 n2 n3; do
        code=$("$RT" inspect -f '{{.State.ExitCode}}' "$(container_of "$name")")
        [ "$code" = 0 ] || fail "$name exited with status $code on SIGTERM (wanted 0)"
    done
    say "every node exited 0 on SIGTERM"

    compose start >"$WORK/start.log" 2>&1 || { tail -20 "$WORK/start.log" >&2; fail "compose start"; }
    wait_ready "${webs[@]}"
    read_back "$N3_WEB_PORT" /check/containers "$value"
    say "the data survived a restart of the whole cluster"
    say "PASS"
}

container_of() {  # the container id of compose service $1
    "$RT" ps -a -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" | head -1
}

main "$@"
