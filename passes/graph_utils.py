"""Small helpers shared by the passes and the serializer: recognising our op and constants."""
from __future__ import annotations

from typing import Optional

import torch
from torch.export import ExportedProgram
from torch.export.exported_program import InputKind

INT4_MM = torch.ops.int4_cuda.int4_plain_mm.default

# node.meta key the stamp pass writes and the validator / serializer read.
INT4_WEIGHT_META = "int4_cuda_weight"

_CONSTANT_KINDS = (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR)


def aten_op(node: torch.fx.Node):
    """The ATen/custom OpOverload behind an edge op (or the target itself)."""
    return getattr(node.target, "_op", node.target)


def is_int4_mm(node: torch.fx.Node) -> bool:
    return node.op == "call_function" and aten_op(node) is INT4_MM


def constant_target(ep: ExportedProgram, node: torch.fx.Node) -> Optional[str]:
    """The state_dict / constants key of a lifted constant placeholder, else None."""
    if node.op != "placeholder":
        return None
    for spec in ep.graph_signature.input_specs:
        if spec.arg.name == node.name and spec.kind in _CONSTANT_KINDS:
            return spec.target
    return None


def constant_value(ep: ExportedProgram, node: torch.fx.Node) -> torch.Tensor:
    target = constant_target(ep, node)
    if target is None:
        raise KeyError(f"{node.name} is not a constant of the program")
    if target in ep.state_dict:
        return ep.state_dict[target]
    return ep.constants[target]


def layer_name(target: str) -> str:
    """'layers.0.wq.parametrizations.weight.original1' -> 'layers.0.wq' (the nn.Linear's name)."""
    head = target.split(".parametrizations.", 1)[0]
    for suffix in (".weight.qdata", ".weight.scale", ".weight.zero", ".weight"):
        if head.endswith(suffix):
            return head[: -len(suffix)]
    return head
