#!/usr/bin/env bash
# One idempotent bootstrap for development and CI.
#
#   scripts/dev.sh demo           run the demo (the digits sweep, locally: mabeam demo)
#   scripts/dev.sh test [ARGS]    ruff, mypy, pytest -q [ARGS], then the benchmark checks
#
# Creates .venv (python3.11, else python3 >= 3.11) when it is missing, and reinstalls the
# project (pip install -e '.[test,examples,ml]') only when pyproject.toml changed since the last
# install; the hash of the installed pyproject.toml is kept in .venv/.mabeam-install-stamp.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv
STAMP="$VENV/.mabeam-install-stamp"

usage() {
    echo "usage: scripts/dev.sh {demo|test} [pytest args...]" >&2
    exit 2
}

step() {
    printf '\n==> %s\n' "$*"
}

find_python() {
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: mabeam needs Python >= 3.11; install python3.11 and run this again" >&2
    return 1
}

ensure_venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        local python
        python="$(find_python)"
        step "creating $VENV with $python"
        "$python" -m venv "$VENV"
    fi
    local want have=""
    want="$("$VENV/bin/python" -c \
        'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' \
        pyproject.toml)"
    [[ -f "$STAMP" ]] && have="$(<"$STAMP")"
    if [[ "$want" != "$have" ]]; then
        step "pip install -e '.[test,examples,ml]' (pyproject.toml changed since the last install)"
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q -e '.[test,examples,ml]'
        echo "$want" >"$STAMP"
    fi
}

run_tests() {
    step "ruff check foundation supervision mabeam tests benchmarks examples"
    "$VENV/bin/ruff" check foundation supervision mabeam tests benchmarks examples

    step "mypy"
    "$VENV/bin/mypy"

    step "pytest -q${*:+ $*}"
    local rc=0
    "$VENV/bin/pytest" -q "$@" || rc=$?
    if [[ $rc -eq 5 ]]; then
        echo "error: pytest collected no tests (exit status 5); failing on purpose" >&2
        exit 1
    elif [[ $rc -ne 0 ]]; then
        exit "$rc"
    fi

    if [[ -f benchmarks/compare.py ]]; then
        step "python -m benchmarks.compare kernel --short --check"
        "$VENV/bin/python" -m benchmarks.compare kernel --short --check
        step "python -m benchmarks.compare supervision --short --check"
        "$VENV/bin/python" -m benchmarks.compare supervision --short --check
        step "python -m benchmarks.compare registry --short --check"
        "$VENV/bin/python" -m benchmarks.compare registry --short --check
        step "python -m benchmarks.compare cluster --short --check"
        "$VENV/bin/python" -m benchmarks.compare cluster --short --check
        step "python -m benchmarks.compare agents --short --check"
        "$VENV/bin/python" -m benchmarks.compare agents --short --check
        step "python -m benchmarks.compare economics --short --check"
        "$VENV/bin/python" -m benchmarks.compare economics --short --check
    fi
}

[[ $# -ge 1 ]] || usage
subcommand="$1"
shift
case "$subcommand" in
demo)
    [[ $# -eq 0 ]] || usage
    ensure_venv
    exec "$VENV/bin/mabeam" demo
    ;;
test)
    ensure_venv
    run_tests "$@"
    ;;
*)
    usage
    ;;
esac
