"""The result of a validation: per-output figures and the verdict (computed by
``fuser.runtime.validate`` and ``fuser.runtime.comparison``)."""

from __future__ import annotations

import dataclasses

from fuser.report.records import Record, doc
from fuser.report.tables import md_table


@dataclasses.dataclass(frozen=True)
class OutputComparison(Record):
    """How one output of the candidate differs from the reference over all batches. It
    passes when ``max_abs <= atol + rtol * max|reference|`` and the candidate has no NaN/inf
    where the reference has none."""

    name: str = doc("the output")
    shape: list[int] = doc("the reference's shape of the output (of the first batch)")
    max_abs: float = doc("largest absolute difference (finite elements)")
    max_rel: float = doc("largest difference relative to the reference element")
    mean_abs: float = doc("mean absolute difference")
    rel_l2: float = doc("L2 norm of the difference / L2 norm of the reference")
    cosine: float = doc("cosine similarity of the two outputs")
    nan_reference: int = doc("NaN elements in the reference's output")
    nan_candidate: int = doc("NaN elements in the candidate's output")
    inf_reference: int = doc("inf elements in the reference's output")
    inf_candidate: int = doc("inf elements in the candidate's output")
    atol: float = doc("absolute tolerance of this output")
    rtol: float = doc("relative tolerance (of the output's largest magnitude)")
    passed: bool = doc("this output's verdict")
    message: str = doc('"ok", or why the output fails')
    top1: float | None = doc("for class scores (last axis > 1): top-1 agreement (fraction), "
                             "else null", default=None)
    top5: float | None = doc("for class scores: the reference's top-1 among the candidate's "
                             "top 5 (fraction), else null", default=None)


@dataclasses.dataclass(frozen=True)
class ValidationResult(Record):
    """The verdict and the per-output figures of one validation."""

    passed: bool = doc("every output passed and the candidate ran")
    outputs: list[OutputComparison] = doc("per output, in the reference's order (empty when "
                                          "`error` is set)")
    batches: int = doc("batches compared")
    samples: int = doc("samples compared (over all batches)")
    inputs: str = doc("where the inputs came from")
    error: str | None = doc("null, or why the candidate could not be run at all",
                            default=None)

    @property
    def failures(self) -> list[str]:
        """The failing outputs' messages, and the error."""
        return [o.message for o in self.outputs if not o.passed] + \
            ([self.error] if self.error else [])

    def to_text(self) -> str:
        """The verdict, then one line of figures per output."""
        lines = [f"validation on {self.inputs} ({self.batches} batch(es), {self.samples} "
                 f"sample(s)): {'PASSED' if self.passed else 'FAILED'}"]
        for o in self.outputs:
            agreement = "" if o.top1 is None else f"  top-1 {o.top1:.2%}  top-5 {o.top5:.2%}"
            lines.append(f"  {o.name}: max abs {o.max_abs:.2e}  max rel {o.max_rel:.2e}  "
                         f"mean abs {o.mean_abs:.2e}  rel L2 {o.rel_l2:.2e}  "
                         f"cos {o.cosine:.6f}{agreement}  {'ok' if o.passed else o.message}")
        if self.error:
            lines.append(f"  {self.error}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The verdict, then a table of the figures per output."""
        lines = [f"{self.inputs} ({self.batches} batch(es), {self.samples} sample(s)): "
                 f"**{'PASSED' if self.passed else 'FAILED'}**", ""]
        lines.append(md_table([{
            "output": o.name, "max abs": f"{o.max_abs:.2e}", "max rel": f"{o.max_rel:.2e}",
            "mean abs": f"{o.mean_abs:.2e}", "rel L2": f"{o.rel_l2:.2e}",
            "cosine": f"{o.cosine:.6f}",
            "top-1": "" if o.top1 is None else f"{o.top1:.2%}",
            "verdict": "ok" if o.passed else o.message} for o in self.outputs]))
        if self.error:
            lines += ["", self.error]
        return "\n".join(lines)
