#!/usr/bin/env bash
# Side environments in which tests/test_export.py loads exports with LLaMA-Factory's and ms-swift's own loaders.
# A full `pip install llamafactory` / `pip install ms-swift` did not resolve within 10 minutes here (the resolver
# backtracks over their torch/transformers pins), so each side environment reuses this project's environment
# (torch, transformers, datasets: a .pth line) and adds the tool with --no-deps plus the few modules its data code
# imports. Usage: tests/export_side_envs.sh [SITE_PACKAGES_OF_THE_REALIGN_ENV]
set -euo pipefail
SITE=${1:-$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')}
make_env() {  # name, packages...
  local dir=/tmp/side_$1; shift
  python3 -m venv "$dir"
  echo "$SITE" > "$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/realign-env.pth"
  "$dir/bin/pip" install -q --no-deps "$@"
}
make_env lf llamafactory==0.9.5 omegaconf==2.4.0
make_env swift ms-swift==4.6.0 modelscope==1.40.2 modelscope-hub==0.5.1 requests urllib3 cryptography cffi pycparser \
  json_repair aiohttp multidict yarl propcache attrs aiohappyeyeballs aiosignal frozenlist
echo "side environments: /tmp/side_lf (LLaMA-Factory), /tmp/side_swift (ms-swift)"
