"""The `int4_cuda` op library: torch.ops.int4_cuda.int4_plain_mm, int4_cuda.linear and the LLM ops.

    int4_plain_mm(x [M, K], qdata uint8 [N, K/2], scale [N, G], zero [N, G], group_size) -> [M, N]

means x @ dequant(W).T with W in the coalesced layout of backend/coalesced_int4_tensor.py. The
pure-PyTorch implementation below (CPU and CUDA) is the reference the GPU kernels are tested
against, with the kernels' exact arithmetic (shims/int4_plain_mm.h): w = q*scale + zero computed
in float32 and rounded once to the GEMM operand dtype, products and sums in float32, the result in
x's dtype:

    x bfloat16: W rounded to bf16, output rounded to bf16   (int4_cuda_int4_plain_mm)
    x float32:  W rounded to bf16 (the same weight values as the bf16 path), x kept in float32,
                output float32, never rounded               (int4_cuda_int4_plain_mm_f32)
    x float16:  W rounded to f16, output rounded to f16     (reference only; export refuses it)

    linear(x [..., K], w [N, K], bias [N]?) -> [..., N]

is schema OpCode.LINEAR for a plain (non-int4) weight whose dtype may differ from x's, e.g. a bf16
tied embedding table under float32 activations: F.linear refuses mixed dtypes, and casting the
table to f32 would store it a second time. Each operand is read in its own dtype, f32 accumulation,
output in x's dtype.
"""
import torch

from .coalesced_int4_tensor import dequantize_coalesced

_lib = torch.library.Library("int4_cuda", "DEF")
_lib.define("int4_plain_mm(Tensor x, Tensor qdata, Tensor scale, Tensor zero, int group_size) -> Tensor")


def _check(x, qdata, scale, zero, group_size):
    torch._check(x.dim() == 2, lambda: f"int4_plain_mm: x must be 2-D [M, K], got {tuple(x.shape)}")
    torch._check(qdata.dim() == 2, lambda: f"int4_plain_mm: qdata must be [N, K/2], got {tuple(qdata.shape)}")
    torch._check(
        x.shape[1] == 2 * qdata.shape[1],
        lambda: f"int4_plain_mm: x has K={x.shape[1]} but qdata packs K={2 * qdata.shape[1]}",
    )
    torch._check(
        tuple(scale.shape) == (qdata.shape[0], x.shape[1] // group_size) and scale.shape == zero.shape,
        lambda: f"int4_plain_mm: scale/zero must be [N, K/group_size] = "
        f"[{qdata.shape[0]}, {x.shape[1] // group_size}], got {tuple(scale.shape)} / {tuple(zero.shape)}",
    )


def operand_dtype(x_dtype: torch.dtype) -> torch.dtype:
    """The dtype the dequantized weight is rounded to, once: bf16 under float32 activations (the
    f32 kernel's tensor-core operand is the bf16 path's weight; only x is wider), else x's dtype."""
    return torch.bfloat16 if x_dtype == torch.float32 else x_dtype


def operand_weight(w: torch.Tensor, x_dtype: torch.dtype) -> torch.Tensor:
    """The float32 dequantized weight rounded once to operand_dtype(x_dtype), kept in float32."""
    return w.to(operand_dtype(x_dtype)).to(torch.float32)


def matmul_dequantized(x: torch.Tensor, w_operand: torch.Tensor) -> torch.Tensor:
    """x [M, K] @ w_operand[N, K]^T (see operand_weight): f32 accumulation, x's dtype out (float32
    x is used unrounded and its result is not rounded)."""
    return (x.to(torch.float32) @ w_operand.t()).to(x.dtype)


@torch.library.impl(_lib, "int4_plain_mm", "CompositeExplicitAutograd")
def int4_plain_mm(x, qdata, scale, zero, group_size):
    _check(x, qdata, scale, zero, group_size)
    w = dequantize_coalesced(qdata, scale, zero, group_size, torch.float32)
    return matmul_dequantized(x, operand_weight(w, x.dtype))


@torch.library.register_fake("int4_cuda::int4_plain_mm")
def _int4_plain_mm_fake(x, qdata, scale, zero, group_size):
    _check(x, qdata, scale, zero, group_size)
    return x.new_empty(x.shape[0], qdata.shape[0])


# -- linear with a plain weight of any float dtype (schema OpCode.LINEAR) ------------------------
_lib.define("linear(Tensor x, Tensor w, Tensor? bias=None) -> Tensor")


def _linear_check(x, w, bias):
    torch._check(w.dim() == 2 and x.dim() >= 1 and x.shape[-1] == w.shape[1],
                 lambda: f"int4_cuda::linear: x [..., K] and w [N, K] disagree: x {tuple(x.shape)}, w {tuple(w.shape)}")
    torch._check(x.is_floating_point() and w.is_floating_point(),
                 lambda: f"int4_cuda::linear: x and w must be float tensors, got {x.dtype} and {w.dtype}")
    torch._check(bias is None or tuple(bias.shape) == (w.shape[0],),
                 lambda: f"int4_cuda::linear: bias must be [N] = [{w.shape[0]}], got {tuple(bias.shape)}")


def linear_f32(x, w, bias=None) -> torch.Tensor:
    """x @ w^T (+ bias), each operand read in its own float dtype, summed in float32; the float32
    result before OpCode.LINEAR rounds it to its output's dtype (reference.py uses it as is)."""
    y = x.to(torch.float32) @ w.to(torch.float32).t()
    return y if bias is None else y + bias.to(torch.float32)


@torch.library.impl(_lib, "linear", "CompositeExplicitAutograd")
def linear(x, w, bias=None):
    _linear_check(x, w, bias)
    return linear_f32(x, w, bias).to(x.dtype)


@torch.library.register_fake("int4_cuda::linear")
def _linear_fake(x, w, bias=None):
    _linear_check(x, w, bias)
    return x.new_empty(*x.shape[:-1], w.shape[0])


# -- LLM ops ---------------------------------------------------------------------------------------
_lib.define("rope(Tensor x, Tensor cos, Tensor sin, Tensor start_pos, bool interleaved) -> Tensor")
_lib.define(
    "kv_attention(Tensor q, Tensor k, Tensor v, Tensor start_pos, int layer, int max_seq_len, float scale=0.0) -> Tensor"
)
# Fused forms for the decode step (schema OpCode.SWIGLU / QKV_ATTENTION): one op where the unfused
# graph has a slice/view/rope chain, each exactly equal to that chain.
_lib.define("swiglu(Tensor x) -> Tensor")
_lib.define(
    "qkv_attention(Tensor qkv, Tensor cos, Tensor sin, Tensor start_pos, int n_heads, int n_kv_heads, "
    "bool interleaved, int layer, int max_seq_len, float scale=0.0) -> Tensor"
)


@torch.library.impl(_lib, "rope", "CompositeExplicitAutograd")
def rope(x, cos, sin, start_pos, interleaved):
    """x [B, T, H, D] rotated by the angles of positions start_pos + t (schema OpCode.ROPE)."""
    t, d = x.shape[1], x.shape[-1]
    p0 = int(start_pos.reshape(-1)[0])
    c = cos[p0:p0 + t].float()[None, :, None, :]  # [1, T, 1, D/2]
    s = sin[p0:p0 + t].float()[None, :, None, :]
    xf = x.float()
    if interleaved:
        a, b = xf[..., 0::2], xf[..., 1::2]
        out = torch.stack([a * c - b * s, b * c + a * s], dim=-1).flatten(-2)
    else:
        a, b = xf[..., : d // 2], xf[..., d // 2:]
        out = torch.cat([a * c - b * s, b * c + a * s], dim=-1)
    return out.to(x.dtype)


@torch.library.register_fake("int4_cuda::rope")
def _rope_fake(x, cos, sin, start_pos, interleaved):
    torch._check(x.dim() == 4 and cos.shape[-1] * 2 == x.shape[-1], lambda: "rope: x [B,T,H,D], cos [P, D/2]")
    torch._check(
        cos.dtype == torch.float32 and sin.dtype == torch.float32,
        lambda: f"rope: cos/sin tables must be float32 (got {cos.dtype}); keep them float32 when casting "
        f"the model (register them after .to(torch.bfloat16))",
    )
    return torch.empty_like(x)


@torch.library.impl(_lib, "kv_attention", "CompositeExplicitAutograd")
def _kv_attention_eager(q, k, v, start_pos, layer, max_seq_len, scale=0.0):
    raise RuntimeError(
        "int4_cuda::kv_attention keeps its KV cache inside an int4_cuda program: it runs in the "
        "reference executor (int4_cuda.load) or the CUDA runtime, not in eager PyTorch"
    )


@torch.library.register_fake("int4_cuda::kv_attention")
def _kv_attention_fake(q, k, v, start_pos, layer, max_seq_len, scale=0.0):
    torch._check(q.dim() == 4 and k.dim() == 4 and k.shape == v.shape, lambda: "kv_attention: q [1,T,H,D], k/v [1,T,Hkv,D]")
    return torch.empty_like(q)


def kv_attention_reference(q, k, v, k_cache, v_cache, start_pos: int, scale: float = 0.0):
    """Schema OpCode.KV_ATTENTION on explicit caches [S, Hkv, D] (updated in place)."""
    t, h, d = q.shape[1], q.shape[2], q.shape[3]
    hkv = k.shape[2]
    if start_pos < 0 or start_pos + t > k_cache.shape[0]:
        raise ValueError(f"kv_attention: positions {start_pos}..{start_pos + t - 1} do not fit the "
                         f"KV cache of {k_cache.shape[0]} positions")
    k_cache[start_pos:start_pos + t] = k[0]
    v_cache[start_pos:start_pos + t] = v[0]
    n = start_pos + t
    kk = k_cache[:n].float().transpose(0, 1).repeat_interleave(h // hkv, dim=0)  # [H, n, D]
    vv = v_cache[:n].float().transpose(0, 1).repeat_interleave(h // hkv, dim=0)
    qq = q[0].float().transpose(0, 1)  # [H, T, D]
    att = (qq @ kk.transpose(1, 2)) * (scale or d ** -0.5)  # [H, T, n]
    pos_q = start_pos + torch.arange(t)[:, None]
    att = att.masked_fill(torch.arange(n)[None, :] > pos_q, float("-inf"))
    out = torch.softmax(att, dim=-1) @ vv  # [H, T, D]
    return out.transpose(0, 1)[None].to(q.dtype)


@torch.library.impl(_lib, "swiglu", "CompositeExplicitAutograd")
def swiglu(x):
    """x [..., 2F] (gate | up) -> silu(gate) * up, with F.silu's rounding to x's dtype kept."""
    gate, up = x.chunk(2, dim=-1)
    return torch.nn.functional.silu(gate) * up


@torch.library.register_fake("int4_cuda::swiglu")
def _swiglu_fake(x):
    torch._check(x.shape[-1] % 2 == 0, lambda: f"swiglu: the last dim ({x.shape[-1]}) must be even (gate | up)")
    return x.new_empty(*x.shape[:-1], x.shape[-1] // 2)


def split_qkv(qkv, n_heads: int, n_kv_heads: int):
    """[1, T, (H + 2 Hkv) D] -> q [1, T, H, D], k, v [1, T, Hkv, D] (views)."""
    b, t, width = qkv.shape
    d = width // (n_heads + 2 * n_kv_heads)
    q, k, v = qkv.split([n_heads * d, n_kv_heads * d, n_kv_heads * d], dim=-1)
    return q.view(b, t, n_heads, d), k.view(b, t, n_kv_heads, d), v.view(b, t, n_kv_heads, d)


@torch.library.impl(_lib, "qkv_attention", "CompositeExplicitAutograd")
def _qkv_attention_eager(qkv, cos, sin, start_pos, n_heads, n_kv_heads, interleaved, layer, max_seq_len, scale=0.0):
    raise RuntimeError(
        "int4_cuda::qkv_attention keeps its KV cache inside an int4_cuda program: it runs in the "
        "reference executor (int4_cuda.load) or the CUDA runtime, not in eager PyTorch"
    )


@torch.library.register_fake("int4_cuda::qkv_attention")
def _qkv_attention_fake(qkv, cos, sin, start_pos, n_heads, n_kv_heads, interleaved, layer, max_seq_len, scale=0.0):
    torch._check(qkv.dim() == 3 and n_kv_heads > 0 and n_heads % n_kv_heads == 0,
                 lambda: "qkv_attention: qkv [1, T, (H + 2 Hkv) D] with H % Hkv == 0")
    torch._check(qkv.shape[-1] % (n_heads + 2 * n_kv_heads) == 0,
                 lambda: f"qkv_attention: width {qkv.shape[-1]} is not (H + 2 Hkv) * D")
    d = qkv.shape[-1] // (n_heads + 2 * n_kv_heads)
    return qkv.new_empty(qkv.shape[0], qkv.shape[1], n_heads * d)


def qkv_attention_reference(qkv, cos, sin, start_pos, n_heads, n_kv_heads, interleaved, k_cache, v_cache, scale=0.0):
    """Schema OpCode.QKV_ATTENTION on explicit caches: the unfused chain it stands for."""
    q, k, v = split_qkv(qkv, n_heads, n_kv_heads)
    q, k = rope(q, cos, sin, start_pos, interleaved), rope(k, cos, sin, start_pos, interleaved)
    y = kv_attention_reference(q, k, v, k_cache, v_cache, int(start_pos.reshape(-1)[0]), scale)
    return y.reshape(qkv.shape[0], qkv.shape[1], -1)
