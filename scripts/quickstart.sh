#!/usr/bin/env bash
# Set up and run privpart's main job: `privpart audit` on the default model and dataset
# (vgg16, fashion-mnist). Extra arguments go to the audit, e.g. --budget-scale 2.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/privpart audit vgg16 --dataset fashion-mnist --out runs/quickstart "$@"
