"""Small programs for the GPU runtime tests, each exported to .pte/.ptd in the test: one per op
family, the transformer-block-shaped programs (MLP4, Block) and an LLM-op program (rope +
kv_attention over decode steps). `build(name, dir)` returns the files and the input steps to run;
the tests compare the CUDA runtime against the reference executor step by step."""
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

import int4_cuda
import int4_cuda.backend  # noqa: F401  (registers torch.ops.int4_cuda)

from testutil import Block, MLP4, sqnr_db  # noqa: F401  (tests/ is on sys.path via tests/conftest.py; sqnr_db re-exported)

bf16 = torch.bfloat16


class Elementwise(nn.Module):
    def forward(self, a, b, c):
        pos = torch.sigmoid(b) + 0.5                       # > 0: safe for rsqrt / div
        y = (a + b) * c - a / pos                          # tensor-tensor broadcast
        y = y + 1.5 - 0.25 * torch.rsqrt(pos) - (-a)       # scalars, NEG
        y = F.silu(y) + y.pow(2) * 0.1 - y / 3.0
        return y, y.mean(dim=-1, keepdim=True), y.mean(dim=(0, 2)), torch.softmax(y, dim=1)


class Norms(nn.Module):
    def __init__(self, d=96):
        super().__init__()
        self.norm = nn.RMSNorm(d, eps=1e-5)
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)

    def forward(self, x):
        y = self.norm(x)
        z = torch.softmax(y.float(), dim=-1).to(bf16)      # COPY bf16 -> f32 -> bf16 around SOFTMAX
        return y, z, F.rms_norm(x, (x.shape[-1],), eps=1e-6)


class Matmuls(nn.Module):
    def forward(self, a, b, m, n):
        return torch.bmm(a, b), m @ n, torch.matmul(a, b.transpose(1, 2).transpose(1, 2))


class Attention(nn.Module):
    def forward(self, q, k, v, bool_mask, float_mask):
        return (F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
                F.scaled_dot_product_attention(q, k, v, attn_mask=bool_mask, enable_gqa=True),
                F.scaled_dot_product_attention(q, k, v, attn_mask=float_mask, scale=0.3, enable_gqa=True))


class Shapes(nn.Module):
    def forward(self, x, y):
        a = x.view(x.shape[0], 4, -1).permute(2, 0, 1)          # VIEW, PERMUTE
        b = y.unsqueeze(1).expand(-1, 4, -1)                    # VIEW, EXPAND
        c = torch.cat([x[:, :8], b.reshape(x.shape[0], -1)[:, 3:11], x[:, -4:]], dim=1)  # SLICE, CAT
        d = x[:, 1::3] * 1.0                                    # strided SLICE
        e = x.select(1, 5)                                      # select
        return a.contiguous(), c, d, e, x.float() * 2.0, (x[:, :4] > 0).to(torch.int64)


class Linears(nn.Module):
    """Plain (not int4) linears: LINEAR with and without bias, bf16 and an f32 logits head."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(96, 80, bias=True)
        self.b = nn.Linear(80, 40, bias=False)

    def forward(self, x):
        h = self.b(F.silu(self.a(x)))
        return h, F.linear(h.float(), self.b.weight.float()[:, :40])


class Gemv(nn.Module):
    """LINEAR at decode sizes (the lm_head matvec): every (M, columns-per-warp) variant, N not a
    multiple of the columns a block covers, a bias and an f32 output."""

    def __init__(self):
        super().__init__()
        for name, (n, k) in {"w1": (1000, 576), "w2": (1003, 2048), "w3": (999, 256)}.items():
            self.register_parameter(name, nn.Parameter((torch.randn(n, k) * 0.05).to(bf16), requires_grad=False))
        self.b1 = nn.Parameter(torch.randn(1000).to(bf16), requires_grad=False)

    def forward(self, x1, x2, x3):
        return F.linear(x1, self.w1, self.b1), F.linear(x2, self.w2).float(), F.linear(x3, self.w3)


class Embed(nn.Module):
    def __init__(self, vocab=100, d=48):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)

    def forward(self, ids):
        return self.emb(ids) * 2.0


class LlmOps(nn.Module):
    """Two attention layers of a decoder with the int4_cuda LLM ops: rope (interleaved and
    half-split) and kv_attention with its delegate-owned KV cache."""

    def __init__(self, heads=4, kv_heads=2, head_dim=32, max_seq=64, dim=128):
        super().__init__()
        self.h, self.kvh, self.hd, self.max_seq = heads, kv_heads, head_dim, max_seq
        inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        ang = torch.outer(torch.arange(max_seq).float(), inv)
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)
        self.wq = nn.Linear(dim, heads * head_dim, bias=False)
        self.wk = nn.Linear(dim, kv_heads * head_dim, bias=False)
        self.wv = nn.Linear(dim, kv_heads * head_dim, bias=False)

    def forward(self, x, start_pos):
        b, t, _ = x.shape
        outs = []
        for layer, interleaved in ((0, True), (1, False)):
            q = self.wq(x).view(b, t, self.h, self.hd)
            k = self.wk(x).view(b, t, self.kvh, self.hd)
            v = self.wv(x).view(b, t, self.kvh, self.hd)
            q = torch.ops.int4_cuda.rope(q, self.cos, self.sin, start_pos, interleaved)
            k = torch.ops.int4_cuda.rope(k, self.cos, self.sin, start_pos, interleaved)
            o = torch.ops.int4_cuda.kv_attention(q, k, v, start_pos, layer, self.max_seq)
            outs.append(o.reshape(b, t, -1))
            x = x + 0.5 * o.reshape(b, t, -1)[..., : x.shape[-1]]
        return outs[0], outs[1]


def _rope_tables(head_dim, positions):
    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    ang = torch.outer(torch.arange(positions).float(), inv)
    return ang.cos(), ang.sin()


class FusedLlmOps(nn.Module):
    """The fused decode ops: qkv_attention on the split-key fast path (D = 64 with 4 query heads per
    KV head, interleaved; D = 128 without grouping, half-split) and on the generic path (D = 32),
    kv_attention on the fast path (no RoPE), swiglu, a bf16 LINEAR head at M = 1 (the matvec), and
    residual add + RMSNorm pairs (ADD_RMS_NORM, with a short and a > 8192-wide row)."""

    LAYERS = ((8, 2, 64, True), (6, 6, 128, False), (4, 1, 32, True))

    def __init__(self, dim=128, max_seq=320, vocab=200, act=bf16):
        """act: the activations' dtype; float32 is an fp32 export (int4_plain_mm_f32, f32 attention
        and caches on the fast path, the bf16 head through int4_cuda::linear)."""
        super().__init__()
        self.max_seq, self.act = max_seq, act
        self.qkv = nn.ModuleList(nn.Linear(dim, (h + 2 * kvh) * d, bias=False) for h, kvh, d, _ in self.LAYERS)
        for d in sorted({d for *_, d, _ in self.LAYERS}):
            cos, sin = _rope_tables(d, max_seq)
            self.register_buffer(f"cos{d}", cos, persistent=False)
            self.register_buffer(f"sin{d}", sin, persistent=False)
        self.gu = nn.Linear(dim, 2 * 96, bias=False)
        self.norm_a = nn.RMSNorm(dim, eps=1e-5)            # ADD_RMS_NORM (row in registers)
        self.norm_b = nn.RMSNorm(65 * dim - 64, eps=1e-6)  # ADD_RMS_NORM with D > 8192 (ADD + RMS_NORM)
        with torch.no_grad():
            self.norm_a.weight.uniform_(0.5, 1.5)
            self.norm_b.weight.uniform_(0.5, 1.5)
        self.head_w = nn.Parameter(torch.randn(vocab, dim).to(bf16) * 0.1, requires_grad=False)
        self.head_b = nn.Parameter(torch.randn(vocab).to(bf16), requires_grad=False)

    def forward(self, x, start_pos):
        outs = []
        for layer, ((h, kvh, d, inter), lin) in enumerate(zip(self.LAYERS, self.qkv)):
            cos, sin = getattr(self, f"cos{d}"), getattr(self, f"sin{d}")
            outs.append(torch.ops.int4_cuda.qkv_attention(lin(x), cos, sin, start_pos, h, kvh, inter, layer, self.max_seq))
        qkv = self.qkv[0](x)  # slices (split_with_sizes is not in the op set)
        b, t = x.shape[:2]
        q, k, v = (qkv[..., a:e].view(b, t, -1, 64) for a, e in ((0, 512), (512, 640), (640, 768)))
        outs.append(torch.ops.int4_cuda.kv_attention(q, k, v, start_pos, 3, self.max_seq).reshape(*x.shape[:2], -1))
        outs.append(torch.ops.int4_cuda.swiglu(self.gu(x)))
        if self.act == bf16:
            outs.append(F.linear(x[:, -1], self.head_w, self.head_b).float())
        else:
            outs.append(torch.ops.int4_cuda.linear(x[:, -1], self.head_w, self.head_b))
        h = x.float() + outs[0][..., :128].float()         # f32 residual + a bf16 delta
        wide = torch.cat([x] * 65, dim=-1)[..., : 65 * 128 - 64].float()
        hw = wide * 0.5 + wide
        outs += [h, self.norm_a(h).to(self.act), hw, self.norm_b(hw).to(self.act)]
        return tuple(outs)


@dataclass
class Case:
    name: str
    model: nn.Module
    example: tuple
    steps: List[tuple]                 # input tuples, run in order (state carries across steps)
    dynamic_shapes: Optional[tuple] = None
    quantize: bool = False
    exact: Sequence[int] = ()          # output indices that must match bit for bit
    # Op-level cases embed their (few) constants in the .pte; a program without constants gets no
    # .ptd from save() while its reader still asks for one (reported upstream).
    embed_weights: bool = True


def _r(*shape, dtype=bf16):
    return torch.randn(*shape).to(dtype)


def cases() -> List[Callable[[], Case]]:
    def elementwise():
        a, b, c = _r(2, 3, 64), _r(64), _r(2, 1, 64)
        return Case("elementwise", Elementwise(), (a, b, c), [(a, b, c)])

    def norms():
        x = _r(5, 7, 96)
        return Case("norms", Norms().to(bf16), (x,), [(x,)])

    def matmuls():
        a, b, m, n = _r(3, 17, 40), _r(3, 40, 24), _r(33, 50), _r(50, 20)
        return Case("matmuls", Matmuls(), (a, b, m, n), [(a, b, m, n)])

    def attention():
        q, k, v = _r(2, 4, 9, 32), _r(2, 2, 13, 32), _r(2, 2, 13, 32)
        bm = torch.rand(9, 13) > 0.3
        bm[:, 0] = True
        fm = _r(2, 1, 9, 13)
        return Case("attention", Attention(), (q, k, v, bm, fm), [(q, k, v, bm, fm)])

    def shapes():
        x, y = _r(6, 32), _r(6, 5)
        return Case("shapes", Shapes(), (x, y), [(x, y)], exact=(0, 1, 2, 3, 4, 5))

    def linears():
        x = _r(3, 5, 96)
        return Case("linears", Linears().to(bf16), (x,), [(x,)])

    def gemv():
        x1, x2, x3 = _r(1, 576), _r(3, 2048), _r(8, 256)
        return Case("gemv", Gemv(), (x1, x2, x3), [(x1, x2, x3)])

    def embed():
        ids = torch.randint(0, 100, (3, 7))
        return Case("embed", Embed().to(bf16), (ids,), [(ids,)], exact=(0,))

    def mlp4():
        seq = torch.export.Dim("m", min=1, max=64)
        x = _r(5, 256)
        steps = [(_r(1, 256),), (_r(7, 256),), (_r(33, 256),), (_r(64, 256),)]
        return Case("mlp4", MLP4().to(bf16), (x,), steps, dynamic_shapes=({0: seq},), quantize=True,
                    embed_weights=False)

    def wide_mlp():
        """Llama-3-8B's unfused up projection (N = 14336, K = 4096) and its down projection: on an H100 the
        first takes the TMA-ring decode kernel with stream-K at M = 1, through the executor's
        workspace (shims/int4_plain_mm.h), three steps in a row on the same workspace."""
        seq = torch.export.Dim("m", min=1, max=8)
        x = _r(2, 4096)
        steps = [(_r(1, 4096),), (_r(1, 4096),), (_r(3, 4096),), (_r(1, 4096),)]
        return Case("wide_mlp", MLP4(dims=(4096, 14336, 4096)).to(bf16), (x,), steps, dynamic_shapes=({0: seq},),
                    quantize=True, embed_weights=False)

    def block():
        seq = torch.export.Dim("seq", min=1, max=64)
        x = _r(1, 16, 256)
        steps = [(_r(1, 1, 256),), (_r(1, 9, 256),), (_r(1, 64, 256),)]
        return Case("block", Block().to(bf16), (x,), steps, dynamic_shapes=({1: seq},), quantize=True,
                    embed_weights=False)

    def llm_ops():
        seq = torch.export.Dim("t", min=1, max=16)
        x = _r(1, 5, 128)
        # Prefill 5 tokens, then 6 decode steps, then a 3-token chunk: positions 0..13.
        steps, pos = [], 0
        for t in [5, 1, 1, 1, 1, 1, 1, 3]:
            steps.append((_r(1, t, 128), torch.tensor([pos], dtype=torch.int64)))
            pos += t
        model = LlmOps()
        for lin in (model.wq, model.wk, model.wv):  # bf16 weights; cos/sin stay float32 (schema)
            lin.to(bf16)
        return Case("llm_ops", model, (x, torch.tensor([0], dtype=torch.int64)), steps,
                    dynamic_shapes=({1: seq}, None), quantize=True, embed_weights=False)

    def fused_llm_ops():
        seq = torch.export.Dim("t", min=1, max=160)
        # A 150-token prefill (one block per row), decode steps and a 3-row chunk on the split-key
        # path (cache 320: 3 key ranges), a 130-token chunk, then decode with all 3 ranges live.
        steps, pos = [], 0
        for t in [150, 1, 1, 3, 130, 1, 1]:
            steps.append((_r(1, t, 128), torch.tensor([pos], dtype=torch.int64)))
            pos += t
        model = FusedLlmOps()
        for lin in (*model.qkv, model.gu):
            lin.to(bf16)
        return Case("fused_llm_ops", model, (_r(1, 5, 128), torch.tensor([0], dtype=torch.int64)), steps,
                    dynamic_shapes=({1: seq}, None), quantize=True, embed_weights=False)

    def fused_llm_ops_f32():
        """The same ops with f32 activations (export_llm --dtype fp32): int4 weights quantized from
        bf16, every activation and the KV caches f32."""
        seq = torch.export.Dim("t", min=1, max=160)
        steps, pos = [], 0
        for t in [150, 1, 1, 3, 130, 1, 1]:
            steps.append((_r(1, t, 128, dtype=torch.float32), torch.tensor([pos], dtype=torch.int64)))
            pos += t
        model = FusedLlmOps(act=torch.float32)
        for lin in (*model.qkv, model.gu):
            lin.to(bf16)
        return Case("fused_llm_ops_f32", model, (_r(1, 5, 128, dtype=torch.float32), torch.tensor([0], dtype=torch.int64)),
                    steps, dynamic_shapes=({1: seq}, None), quantize=True, embed_weights=False)

    return [elementwise, norms, matmuls, attention, shapes, linears, gemv, embed, mlp4, wide_mlp, block, llm_ops,
            fused_llm_ops, fused_llm_ops_f32]


def build(make: Callable[[], Case], out_dir: str, seed: int = 0):
    torch.manual_seed(seed)
    case = make()
    model = case.model.eval()
    if case.quantize:
        int4_cuda.quantize_(model, 32)
    files = int4_cuda.export_to_files(model, case.example, out_dir, name=case.name,
                                      dynamic_shapes=case.dynamic_shapes, embed_weights=case.embed_weights)
    return case, files


