#!/usr/bin/env bash
# Idempotent set-up: virtual environment with pinned packages, plus the Debian data/browser
# packages where apt is available and we are root. Re-running is fast: a stamp records what was
# installed. Usage: scripts/setup.sh [--test]   (--test adds test tools, Ray and Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1
VENV=${PRIVPART_VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "privpart needs Python >= 3.11 (found $("$PY" --version 2>&1))." >&2
  echo "Install python3.11 (e.g. apt-get install python3.11 python3.11-venv) and re-run." >&2
  exit 1
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "==> creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi

extras=".[serve]"  # everything: auditing, and serving the split
[[ $want_test == 1 ]] && extras=".[serve,test,ray]"  # CI runs the Ray tests too
stamp="$VENV/.privpart-stamp"
fingerprint="$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16) $extras"
if [[ ! -f "$stamp" ]] || ! grep -qxF "$fingerprint" "$stamp"; then
  echo "==> installing pinned packages (torch 2.14.1, torchvision 0.29.1, ...): about 2 minutes"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -c requirements/constraints.txt torch==2.14.1 torchvision==0.29.1
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -c requirements/constraints.txt -e "$extras"
  echo "$fingerprint" >> "$stamp"
fi

# Debian packages: the real Fashion-MNIST, and Chromium for the report's browser test.
debs=()
[[ -d /usr/share/datasets/fashion-mnist ]] || debs+=(dataset-fashion-mnist)
[[ $want_test == 1 && ! -x /usr/bin/chromium ]] && debs+=(chromium)
if (( ${#debs[@]} )); then
  if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
    echo "==> apt-get install ${debs[*]}"
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null
  else
    echo "NOTE: could not install ${debs[*]} (needs apt-get and root)." >&2
    echo "  Fashion-MNIST: run 'sudo apt-get install dataset-fashion-mnist', or download the" >&2
    echo "  four IDX files yourself and pass --data-dir FOLDER (or set PRIVPART_DATA=FOLDER)." >&2
    echo "  Chromium (report browser test only): 'sudo apt-get install chromium'; that test" >&2
    echo "  is skipped without it." >&2
  fi
fi
