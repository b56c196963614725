#!/usr/bin/env bash
# Set up and run privpart's main job on the default model and dataset (vgg16, fashion-mnist).
# Extra arguments go to the job, e.g. scripts/quickstart.sh --out runs/mine
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
out=runs/quickstart
.venv/bin/privpart cuts vgg16 --input 1x32x32
.venv/bin/privpart train vgg16 --dataset fashion-mnist --limit 12000 --epochs 1 --out "$out/target" "$@"
