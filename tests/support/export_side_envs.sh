#!/usr/bin/env bash
# Side environments in which tests/test_export.py loads exports with LLaMA-Factory's and ms-swift's own loaders.
# A full `pip install llamafactory` / `pip install ms-swift` did not resolve within 10 minutes here (the resolver
# backtracks over their torch/transformers pins), so each side environment reuses this project's environment
# (torch, transformers, datasets: a .pth line) and adds the tool with --no-deps plus the few modules its data code
# imports. Usage (with the realign environment active): tests/support/export_side_envs.sh [SITE_PACKAGES_OF_THE_REALIGN_ENV]
# SIDE_PREFIX (default /tmp/side_) names the environments: ${SIDE_PREFIX}lf, ${SIDE_PREFIX}swift.
set -euo pipefail
PY=${PYTHON:-python}
SITE=${1:-$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')}
PREFIX=${SIDE_PREFIX:-/tmp/side_}
make_env() {  # name, packages...
  local dir=$PREFIX$1; shift
  "$PY" -m venv "$dir"
  echo "$SITE" > "$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/realign-env.pth"
  "$dir/bin/pip" install -q --no-deps "$@"
}
make_env lf llamafactory==0.9.5 omegaconf==2.4.0
make_env swift ms-swift==4.6.0 modelscope==1.40.2 modelscope-hub==0.5.1 requests urllib3 cryptography cffi pycparser \
  json_repair aiohttp multidict yarl propcache attrs aiohappyeyeballs aiosignal frozenlist
echo "side environments: ${PREFIX}lf (LLaMA-Factory), ${PREFIX}swift (ms-swift)"
