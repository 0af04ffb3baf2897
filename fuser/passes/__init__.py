"""The passes: registry, default exact pipeline, and lookup by name."""

from __future__ import annotations

from fuser.errors import FuserError
from fuser.passes.base import REGISTRY, Pass, PassResult, register
from fuser.passes.exact import (  # noqa: F401  (importing registers the passes)
    batchnorm_to_affine,
    cancel_squeeze,
    cancel_transposes,
    cancel_transposes_across,
    dedupe_constants,
    eliminate_identity,
    eliminate_noops,
    flush_denormals,
    fold_affine,
    fold_batchnorm,
    fold_constants,
    fold_into_next,
    fold_pad,
    fold_pad_into_maxpool,
    fuse_matmul_add,
    fuse_prelu,
    inline_constants,
    merge_concats,
    merge_reshapes,
    merge_slices,
    merge_unsqueezes,
    transpose_to_reshape,
)

#: The exact (output-preserving) pipeline, in order. Folding into a producer comes before
#: folding into a consumer: ``Conv -> BN -> Conv`` should fold into the first Conv, where it is
#: always exact, not into the second, where padding may forbid it.
DEFAULT_PIPELINE: tuple[str, ...] = (
    "inline-constants",
    "fold-constants",
    "dedupe-constants",
    "eliminate-identity",
    "eliminate-noops",
    "transpose-to-reshape",
    "merge-reshapes",
    "cancel-squeeze-unsqueeze",
    "merge-unsqueezes",
    "merge-slices",
    "merge-concats",
    "cancel-transposes",
    "cancel-transposes-across",
    "fuse-prelu",
    "fold-pad-into-conv",
    "fold-pad-into-maxpool",
    "fuse-matmul-add",
    "fold-batchnorm",
    "fold-affine",
    "fold-into-next-conv",
    "flush-denormals",
)


def get_pass(name: str, **options: object) -> Pass:
    """An instance of the pass called ``name``.

    Raises:
        FuserError: unknown name (the message lists the known ones).
    """
    try:
        cls = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise FuserError(f"unknown pass {name!r} (known: {known})") from None
    return cls(**options)


__all__ = ["DEFAULT_PIPELINE", "REGISTRY", "Pass", "PassResult", "get_pass", "register"]
