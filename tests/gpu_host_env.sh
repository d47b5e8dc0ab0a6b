# Sourced by every GPU-host visit script (tests/**/*gpu*.sh, run_sanitizers.sh):
#   . tests/gpu_host_env.sh "$out" || exit 1
# Installs the carried wheels (.gpu-host/setup.sh, log in $out/setup.log) and makes `int4_cuda`
# importable without pip-installing the project: its package-dir mapping (int4_cuda.backend ->
# backend/ ...) is assembled as one tree in /tmp/pkg. Callers run Python with -P so the checkout
# itself does not shadow it.
# A later call on the same warm machine may leave .whl/ behind (64 MiB per call): the wheels
# installed by an earlier call in /tmp/site are used as they are.
if [ ! -d .whl ] && [ -d /tmp/site/executorch ]; then
  export PYTHONPATH=/tmp/site EXECUTORCH_PREFIX=/tmp/site/executorch
else
  . .gpu-host/setup.sh >"$1/setup.log" 2>&1 || { cat "$1/setup.log"; return 1; }
fi
rm -rf /tmp/pkg && mkdir -p /tmp/pkg && cp -r int4_cuda /tmp/pkg/ &&
  for p in backend passes schema; do cp -r "$p" "/tmp/pkg/int4_cuda/$p"; done
export PYTHONPATH=/tmp/pkg:/tmp/site PYTHONUNBUFFERED=1
