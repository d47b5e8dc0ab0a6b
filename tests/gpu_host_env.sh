# Sourced by every GPU-host visit script (tests/**/*gpu*.sh, run_sanitizers.sh):
#   . tests/gpu_host_env.sh "$out" || exit 1
# Installs the carried wheels (.gpu-host/setup.sh, log in $out/setup.log) and makes `int4_cuda`
# importable without pip-installing the project: its package-dir mapping (int4_cuda.backend ->
# backend/ ...) is assembled as one tree in /tmp/pkg. Callers run Python with -P so the checkout
# itself does not shadow it.
. .gpu-host/setup.sh >"$1/setup.log" 2>&1 || { cat "$1/setup.log"; return 1; }
rm -rf /tmp/pkg && mkdir -p /tmp/pkg && cp -r int4_cuda /tmp/pkg/ &&
  for p in backend passes schema; do cp -r "$p" "/tmp/pkg/int4_cuda/$p"; done
export PYTHONPATH=/tmp/pkg:/tmp/site PYTHONUNBUFFERED=1
