#!/usr/bin/env bash
# sipfast developer entry point: sets everything up, then runs one job.
#
#   ./dev.sh demo    set up, then run sipfast's main job (see README)
#   ./dev.sh test    set up, then run the whole test suite
#   ./dev.sh bench   set up, then run the benchmarks in bench/
#   ./dev.sh annotate  write Cython's annotated HTML (cython -a) to build/annotate/
#   ./dev.sh setup   only set up
#
# Set-up is idempotent: Debian packages (apt), a virtualenv in .venv with the
# pinned tools of requirements-dev.txt, and the compiled build of sipfast
# installed into it.  It needs root (or sudo) for apt on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=$ROOT/.venv
export PATH="$VENV/bin:$PATH"
APT_PACKAGES=(gcc python3-dev python3-venv sip-tester kamailio baresip-core tshark iproute2 nftables)
# program -> Debian package, for the tools the tests run (the e2e tests fail, not
# skip, when one is missing): SIPp, Kamailio 5.6 as a neighbouring proxy, baresip
# as a real user agent, dumpcap (package tshark) for the loopback captures; ip, tc
# and nft for the namespaces and packet loss of e2e/test_loss.py (nft drops packets
# where the kernel has no netem).
TOOLS=(sipp:sip-tester kamailio:kamailio baresip:baresip-core dumpcap:tshark gcc:gcc
       ip:iproute2 tc:iproute2 nft:nftables)

log() { printf '\033[1m[dev.sh]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi; }

have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

setup_apt() {
    local missing=() t
    for t in "${TOOLS[@]}"; do have "${t%%:*}" || missing+=("${t#*:}"); done
    if [ ${#missing[@]} -gt 0 ]; then
        command -v apt-get >/dev/null || die "apt-get not found; install: ${missing[*]}"
        log "installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    command -v gcc >/dev/null || die "gcc still missing: no C compiler, sipfast cannot be built"
    for t in "${TOOLS[@]}"; do
        have "${t%%:*}" || die "${t%%:*} still missing after apt-get install ${t#*:}"
    done
}

find_python() {
    for py in python3.11 python3; do
        if command -v "$py" >/dev/null && "$py" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
            echo "$py"; return; fi
    done
    die "Python 3.11 or newer not found"
}

setup_venv() {
    local py; py=$(find_python)
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating virtualenv .venv with $py"
        if ! "$py" -m venv "$VENV" 2>/dev/null; then
            rm -rf "$VENV"
            log "python venv module missing; installing Debian python3-venv"
            as_root apt-get update -qq
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-dev >/dev/null
            "$py" -m venv "$VENV"
        fi
    fi
    local stamp=$VENV/.stamp-requirements want
    want=$(sha256sum requirements-dev.txt | cut -c1-16)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing Python tools (requirements-dev.txt)"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -r requirements-dev.txt
        echo "$want" > "$stamp"
    fi
}

build() {
    # Rebuild and reinstall when any source of the package changed.
    local stamp=$VENV/.stamp-build want
    want=$(shopt -s nullglob; cat setup.py pyproject.toml ext/*.pyx ext/*.pxi sipfast/*.pxd sipfast/*.py sipfast/*/*.py | sha256sum | cut -c1-16)
    exec 9>"$VENV/.build.lock"
    flock 9    # one build at a time in this tree
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! (cd / && "$VENV/bin/python" -c 'import sipfast._core') 2>/dev/null; then
        log "building and installing sipfast (Cython)"
        "$VENV/bin/python" -m pip install -q --no-build-isolation --no-deps . \
            || die "build failed (see above)"
        echo "$want" > "$stamp"
    fi
    exec 9>&-
}

setup() { setup_apt; setup_venv; build; }

cmd=${1:-}
shift || true
case "$cmd" in
    setup) setup ;;
    demo)  setup; exec "$VENV/bin/sipfast" demo "$@" ;;
    test)
        setup
        log "lint: ruff, cython-lint"
        "$VENV/bin/ruff" check sipfast tests bench setup.py
        "$VENV/bin/cython-lint" ext sipfast/_core.pxd
        log "tests"
        # Run from tests/ so the installed build, not the source tree, is imported.
        set +e
        (cd tests && "$VENV/bin/python" -m pytest -c "$ROOT/tox.ini" --rootdir "$ROOT" -p no:cacheprovider "$@")
        rc=$?
        set -e
        # pytest exit 5 means no test was collected: that is a failure here.
        [ $rc -eq 5 ] && die "pytest collected no tests"
        exit $rc ;;
    bench) setup; exec "$VENV/bin/python" -m pytest -c "$ROOT/tox.ini" --rootdir "$ROOT" -p no:cacheprovider bench "$@" ;;
    annotate)
        setup
        rm -rf build/annotate && mkdir -p build/annotate
        SIPFAST_ANNOTATE=1 "$VENV/bin/python" setup.py -q build_ext --force \
            --build-temp build/tmp-annotate --build-lib build/tmp-annotate >/dev/null
        mv ext/*.html build/annotate/ 2>/dev/null || true
        rm -f ext/core.c sipfast/_core*.so
        log "annotated sources: build/annotate/*.html (yellow lines touch Python objects)" ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
