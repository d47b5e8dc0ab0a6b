"""Python half of the backend: quantize -> pack (CoalescedInt4Tensor) -> partition -> preprocess."""
from . import ops  # noqa: F401  (registers torch.ops.int4_cuda.*)
from .coalesced_int4_tensor import SUPPORTED_GROUP_SIZES, CoalescedInt4Tensor
from .int4_quantizer import quantize_, quantize_int4

__all__ = ["CoalescedInt4Tensor", "SUPPORTED_GROUP_SIZES", "quantize_", "quantize_int4"]
