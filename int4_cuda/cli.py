"""`int4-cuda`: inspect, run and upgrade int4_cuda programs.

    int4-cuda inspect model.pte [--data model.ptd]
    int4-cuda generate --model model.pte --prompt "..." [--chat] [--max_new_tokens N] [--temperature T]
    int4-cuda upgrade old.pte new.pte [--data old.ptd]
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from int4_cuda.errors import Int4CudaError


def _inspect(args) -> int:
    from int4_cuda.blob import DTYPE_SIZE, decode_blob, static_dims, verify_graph
    from int4_cuda.pte_file import ProgramFile
    from int4_cuda.schema import DTYPE_NAMES, OP_NAMES, WEIGHT_LAYOUT_NAMES

    pf = ProgramFile.open(args.model, args.data)
    print(f"{args.model}")
    print(f"  methods: {', '.join(p.name for p in pf.program.execution_plan)}")
    dels = pf.delegates()
    needs = pf.ptd_path or "none (weights embedded in the .pte)"
    print(f"  weights file: {needs}")
    for d in dels:
        where = f"{args.model} [{d.plan} delegate {d.index}]"
        g = decode_blob(d.blob, where)
        ops = {}
        for op in g.ops or []:
            name = OP_NAMES.get(op.code, f"?{op.code}")
            ops[name] = ops.get(name, 0) + 1
        const_bytes = sum(DTYPE_SIZE.get(t.dtype, 0) * _prod(static_dims(t, where)) for t in g.values if t.constantKey)
        print(f"  delegate Int4CudaBackend #{d.index} of '{d.plan}': format v{g.version}, {len(g.ops or [])} ops, "
              f"{len(g.values)} values, {const_bytes:,} constant bytes")
        print("    ops: " + ", ".join(f"{k}×{v}" for k, v in sorted(ops.items())))
        if g.int4Weights:
            print(f"    {'int4 weight':<36} {'N':>7} {'K':>7} {'gs':>4}  {'layout':<19} {'bytes':>11}")
        for w in g.int4Weights or []:
            nbytes = sum(DTYPE_SIZE[g.values[v].dtype] * _prod(static_dims(g.values[v], where)) for v in (w.qdata, w.scale, w.zero))
            print(f"    {w.name:<36} {w.n:>7} {w.k:>7} {w.groupSize:>4}  {WEIGHT_LAYOUT_NAMES.get(w.layout, w.layout):<19} {nbytes:>11,}")
        ins = [g.values[i] for i in g.inputs if i >= 0]
        print("    inputs: " + ", ".join(f"{t.name} {DTYPE_NAMES[t.dtype].lower()}{_dims(t)}" for t in ins))
        # The listing above shows what is in the file; this says whether the runtime would load it
        # (layout, weights present and the right size) — an error here exits 2.
        verify_graph(g, where, pf.path, pf.named_bytes)
    print("  verified: the runtime's load checks pass")
    return 0


def _prod(xs):
    p = 1
    for x in xs:
        p *= x
    return p


def _dims(t) -> str:
    parts = []
    for d in t.dims or []:
        parts.append(str(d.offset) if d.symbol < 0 else (f"s{d.symbol}" if (d.coeff, d.offset) == (1, 0) else f"{d.coeff}*s{d.symbol}+{d.offset}"))
    return "[" + ", ".join(parts) + "]"


def _upgrade(args) -> int:
    from int4_cuda.relayout import upgrade

    changed = upgrade(args.old, args.new, args.data)
    print(f"{args.new}: {len(changed)} weight(s) moved to the coalesced [N, n_groups] layout"
          + (f" ({', '.join(changed[:5])}{', …' if len(changed) > 5 else ''})" if changed else " (already coalesced)"))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="int4-cuda", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("inspect", help="list delegates, ops and int4 weights of a .pte")
    s.add_argument("model")
    s.add_argument("--data", help="the .ptd (default: the one the .pte names, next to it)")
    s.set_defaults(fn=_inspect)
    s = sub.add_parser("generate", help="generate text from an exported LLM (GPU if available, else CPU)")
    from int4_cuda.llm.generate import add_arguments, run_generate

    add_arguments(s)
    s.set_defaults(fn=run_generate)
    s = sub.add_parser("upgrade", help="rewrite legacy [n_groups, N] scale/zero to the coalesced layout")
    s.add_argument("old")
    s.add_argument("new")
    s.add_argument("--data", help="the old .ptd (default: the one the .pte names, next to it)")
    s.set_defaults(fn=_upgrade)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except Int4CudaError as e:
        print(f"int4-cuda {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
