"""The intermediate representation stage: the only package that touches ONNX protobuf.

Load and save models (external data included), convert between ``onnx.ModelProto`` and the
onnx-graphsurgeon graph that passes rewrite, export it back, run the checker and shape
inference, and count what a model holds (ops, parameters, MACs). The functions are imported
here from the modules that define them (``io``, ``export``, ``checker``, ``statistics``,
``proto``), so stages above write ``from fuser import ir`` and ``ir.load(...)``.
"""

from fuser.ir.convert import (
    annotate_fixed,
    annotated_at,
    opset,
    reannotate,
    to_graph,
    with_outputs,
)
from fuser.ir.io import (
    PROTOBUF_LIMIT,
    ModelLike,
    Shapes,
    annotate,
    check,
    check_and_infer,
    constant_view,
    count_macs,
    fix_input_shapes,
    float_weights,
    infer_shapes,
    layer_macs,
    load,
    mac_count,
    op_histogram,
    param_count,
    referenced_files,
    replaced_by_save,
    require_known_opsets,
    save,
    skeleton,
    subgraph_node_count,
    to_model,
    weights_nbytes,
    writing,
)

__all__ = [
    "ModelLike",
    "PROTOBUF_LIMIT",
    "Shapes",
    "annotate",
    "annotated_at",
    "check",
    "check_and_infer",
    "constant_view",
    "count_macs",
    "annotate_fixed",
    "fix_input_shapes",
    "float_weights",
    "infer_shapes",
    "load",
    "layer_macs",
    "mac_count",
    "op_histogram",
    "opset",
    "param_count",
    "reannotate",
    "referenced_files",
    "replaced_by_save",
    "require_known_opsets",
    "save",
    "skeleton",
    "subgraph_node_count",
    "to_graph",
    "to_model",
    "weights_nbytes",
    "with_outputs",
    "writing",
]
