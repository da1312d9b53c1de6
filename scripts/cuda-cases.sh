#!/usr/bin/env bash
# The large-M cases on a CUDA machine without a package index: one command.
#
#   scripts/cuda-cases.sh WHEELDIR OUTDIR
#
# WHEELDIR holds the three linear_operator wheels, told apart by their names (the versions come from fork.toml,
# through `python -m linear_operator_fork pin`):
#   stock          linear_operator-<upstream.version>-py3-none-any.whl
#   thread release linear_operator-<stock.thread-release>-py3-none-any.whl (0.6.0 is also named 0.6)
#   fork           linear_operator-<upstream.version>+fork.<build.number>-py3-none-any.whl
# and every other wheel they need that the machine lacks: gpytorch and its dependencies (jaxtyping and
# wadler_lindig for the thread release; scipy, scikit-learn, mpmath if absent). torch must already be installed.
# Each linear_operator goes into OUTDIR/site-<variant>, the other wheels into OUTDIR/site-common (pip install
# --no-index --no-deps --target); the cases run from this checkout on cuda and write OUTDIR/records-<K>-<variant>.json.
# Environment: PYTHON (default python3), TIMEOUT seconds per case (default 900), BUDGET seconds (default: none): a
# run not started within BUDGET seconds of the script's start is skipped, and says so (a lent GPU's time is short:
# the runs come most telling first: training (with case a's sweep), the thread's script, predictions).
set -euo pipefail
if [ $# -ne 2 ] || [ ! -d "$1" ]; then
    echo "usage: $0 WHEELDIR OUTDIR" >&2
    exit 2
fi
wheels=$(cd "$1" && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
timeout=${TIMEOUT:-900}
budget=${BUDGET:-}
pin() { "$py" -m linear_operator_fork pin "$1"; }
version=$(pin version)
fork_version=$(pin fork-version)
thread=$(pin thread-release)

one_wheel() {  # the single wheel in WHEELDIR matching one of the globs
    local found=() glob file
    for glob in "$@"; do
        for file in "$wheels"/$glob; do
            if [ -f "$file" ]; then found+=("$file"); fi
        done
    done
    if [ ${#found[@]} -ne 1 ]; then
        echo "expected one wheel $* in $wheels, found ${#found[@]}: ${found[*]}" >&2
        exit 2
    fi
    echo "${found[0]}"
}

install() {  # site name, wheels...
    local site="$out/site-$1"
    shift
    rm -rf "$site"
    "$py" -m pip install --quiet --no-index --no-deps --target "$site" "$@"
}

others=()
for wheel in "$wheels"/*.whl; do
    [ -f "$wheel" ] || continue
    case "$(basename "$wheel")" in linear_operator-*) ;; *) others+=("$wheel") ;; esac
done
if [ ${#others[@]} -gt 0 ]; then install common "${others[@]}"; else mkdir -p "$out/site-common"; fi
stock=$(one_wheel "linear_operator-$version-py3*.whl")
if [ "${thread%.0}" != "$thread" ]; then
    thread_wheel=$(one_wheel "linear_operator-$thread-py3*.whl" "linear_operator-${thread%.0}-py3*.whl")
else
    thread_wheel=$(one_wheel "linear_operator-$thread-py3*.whl")
fi
fork=$(one_wheel "linear_operator-$fork_version-py3*.whl")
install stock "$stock"
install "stock-$thread" "$thread_wheel"
install fork "$fork"
mkdir -p "$out/site-reference"  # the reference imports no linear_operator

part=0
run() {  # variant, then extra arguments of `cases run`
    local variant=$1
    shift
    part=$((part + 1))
    if [ -n "$budget" ] && [ "$SECONDS" -ge "$budget" ]; then
        echo "skipped (BUDGET=$budget s spent): $variant $*" >&2
        return
    fi
    "$py" -m linear_operator_fork cases run --device cuda --size cuda --timeout "$timeout" --variant "$variant" \
        --pythonpath "$out/site-$variant:$out/site-common" --out "$out/records-$part-$variant.json" "$@"
}
nvidia-smi || true
run fork --cases a,b,g,d,c --sweep
run reference --cases a,b,g --sweep
run stock --cases a,b --sweep
run "stock-$thread" --cases c
run fork --cases e,f
run reference --cases e,f
echo "records: $out/records-*.json"
