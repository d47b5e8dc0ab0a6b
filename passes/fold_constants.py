"""FoldConstantsPass: every computation on constants only is done now, at export time.

Above all this folds a transpose/permute of a weight constant (e.g. scale/zero handed over in
torchao's [n_groups, N] layout and transposed in the graph) into a new, contiguous constant, so no
constant is transposed at run time. Uses ExecuTorch's constant_prop_pass, which also updates the
program's signature and state_dict.
"""
from executorch.exir.pass_base import ExportedProgramPassBase, ExportedProgramPassResult
from executorch.exir.passes.constant_prop_pass import constant_prop_pass
from torch.export import ExportedProgram


class FoldConstantsPass(ExportedProgramPassBase):
    def call(self, exported_program: ExportedProgram) -> ExportedProgramPassResult:
        before = len(exported_program.graph.nodes)
        ep = constant_prop_pass(exported_program)
        return ExportedProgramPassResult(ep, len(ep.graph.nodes) != before)
