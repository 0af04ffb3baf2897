"""Copy weights from a zoo network in PyTorch to the same network in Keras.

Both builders name layers alike, so the copy goes by name, converting layouts:

    Conv2d (O, I/g, kh, kw)     -> Conv2D kernel (kh, kw, I/g, O)
    depthwise (C, 1, kh, kw)    -> DepthwiseConv2D kernel (kh, kw, C, 1)
    Linear (out, in)            -> Dense kernel (in, out)
    BatchNorm2d weight, bias, running_mean, running_var -> gamma, beta, moving mean/var
"""

from __future__ import annotations

from typing import Any

import numpy as np


def torch_to_keras(torch_net: Any, keras_model: Any) -> int:
    """Copy every named layer's weights; return how many layers were copied.

    Raises:
        ValueError: a layer is missing on one side or its shapes do not match.
    """
    from torch import nn

    copied = 0
    keras_layers = {layer.name: layer for layer in keras_model.layers}
    for name, module in torch_net.layers.items():
        if isinstance(module, nn.MaxPool2d):
            continue
        if name not in keras_layers:
            raise ValueError(f"layer {name!r} has no Keras counterpart")
        layer = keras_layers[name]
        state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()
                 if k != "num_batches_tracked"}
        if isinstance(module, nn.Conv2d):
            kernel = state["weight"]
            depthwise = type(layer).__name__ == "DepthwiseConv2D"
            kernel = kernel.transpose(2, 3, 0, 1) if depthwise else kernel.transpose(2, 3, 1, 0)
            weights = [kernel] + ([state["bias"]] if "bias" in state else [])
        elif isinstance(module, nn.BatchNorm2d):
            weights = [state["weight"], state["bias"], state["running_mean"],
                       state["running_var"]]
        elif isinstance(module, nn.Linear):
            weights = [state["weight"].T, state["bias"]]
        else:
            raise ValueError(f"layer {name!r}: cannot transfer {type(module).__name__}")
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if expected != [tuple(w.shape) for w in weights]:
            raise ValueError(f"layer {name!r}: Keras expects {expected}, PyTorch has "
                             f"{[tuple(w.shape) for w in weights]}")
        layer.set_weights([np.ascontiguousarray(w) for w in weights])
        copied += 1
    return copied
