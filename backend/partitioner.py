"""Int4CudaPartitioner: tags every node the int4_cuda delegate runs (backend/op_support.py)."""
from __future__ import annotations

import logging
from typing import Callable, List, Optional, Tuple

import torch
from executorch.exir.backend.partitioner import DelegationSpec, Partitioner, PartitionResult
from executorch.exir.backend.utils import tag_constant_data
from torch.export import ExportedProgram
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
from torch.fx.passes.operator_support import OperatorSupportBase

from .int4_cuda_backend import Int4CudaBackend, compile_specs
from .op_support import is_supported

log = logging.getLogger(__name__)


class _Support(OperatorSupportBase):
    def __init__(self):
        self.rejected: List[Tuple[str, str]] = []

    def is_node_supported(self, submodules, node: torch.fx.Node) -> bool:
        reason = is_supported(node)
        if reason is not None and node.op == "call_function":
            self.rejected.append((node.name, reason))
        return reason is None


class Int4CudaPartitioner(Partitioner):
    """name: the model name; constants land in `<name>.ptd` beside `<name>.pte` unless
    embed_weights is set, in which case they stay inside the .pte."""

    def __init__(self, name: str = "model", embed_weights: bool = False):
        super().__init__()
        self.delegation_spec = DelegationSpec(Int4CudaBackend.__name__, compile_specs(name, embed_weights))
        self.rejected: List[Tuple[str, str]] = []  # (node, reason) left to ExecuTorch's CPU kernels

    def ops_to_not_decompose(self, ep: ExportedProgram) -> Tuple[List[torch._ops.OpOverload], Optional[Callable]]:
        # Kept whole so they run as one fused op in the delegate instead of a dozen small ones.
        return [torch.ops.aten.rms_norm.default, torch.ops.aten.scaled_dot_product_attention.default,
                torch.ops.aten.silu.default, torch.ops.aten.linear.default], None

    def partition(self, exported_program: ExportedProgram) -> PartitionResult:
        support = _Support()
        partitions = CapabilityBasedPartitioner(
            exported_program.graph_module, support, allows_single_node_partition=True
        ).propose_partitions()
        tags = {}
        for p in partitions:
            tag = f"int4_cuda_{p.id}"
            for node in p.nodes:
                node.meta["delegation_tag"] = tag
            tags[tag] = self.delegation_spec
        tag_constant_data(exported_program)
        self.rejected = support.rejected
        for name, reason in self.rejected:
            log.info("int4_cuda: %s stays on ExecuTorch's CPU kernels: %s", name, reason)
        return PartitionResult(tagged_exported_program=exported_program, partition_tags=tags)
