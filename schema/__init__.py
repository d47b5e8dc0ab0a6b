"""Bindings of schema/int4_cuda.fbs (generated into int4_cuda_generated.py by schema/generate.py)."""
from .int4_cuda_generated import *  # noqa: F401,F403
from .int4_cuda_generated import DType, FormatVersion, Graph, GraphT, Limits, OpArg, OpCode, WeightLayout  # noqa: F401

FILE_IDENTIFIER = b"I4CU"

WEIGHT_LAYOUT_NAMES = {v: k for k, v in vars(WeightLayout).items() if not k.startswith("_")}
OP_NAMES = {v: k for k, v in vars(OpCode).items() if not k.startswith("_")}
DTYPE_NAMES = {v: k for k, v in vars(DType).items() if not k.startswith("_")}


def make(cls, **fields):
    """Object-API table with fields set, e.g. make(ScalarArgT, value=2.0) (generated classes take no args)."""
    obj = cls()
    for k, v in fields.items():
        if not hasattr(obj, k):
            raise AttributeError(f"{cls.__name__} has no field {k}")
        setattr(obj, k, v)
    return obj


def arg_type_of(arg) -> int:
    """The OpArg union tag of an object-API argument table."""
    return getattr(OpArg, type(arg).__name__[:-1])
