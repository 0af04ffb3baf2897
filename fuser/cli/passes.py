"""``onnx-fuser passes``: list the registered passes and the default pipeline."""

from __future__ import annotations

import argparse

from fuser import search  # noqa: F401  (importing it registers the weight-only low-rank passes)
from fuser.cli import options
from fuser.passes import DEFAULT_PIPELINE, REGISTRY

RUNS_MODELS = False


def add_arguments(lst: argparse.ArgumentParser) -> None:
    """The arguments of ``onnx-fuser passes``."""
    options.add_output(lst, what="the list", report=False)
    lst.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    rows = [{"name": name, "lossy": cls.lossy, "default": name in DEFAULT_PIPELINE,
             "summary": cls.summary()} for name, cls in sorted(REGISTRY.items())]
    out = options.human(args)
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        flags = "default" if r["default"] else ("lossy" if r["lossy"] else "opt-in")
        print(f"{r['name']:<{width}}  {flags:<7}  {r['summary']}", file=out)
    print(f"default pipeline: {', '.join(DEFAULT_PIPELINE)}", file=out)
    if args.json:
        options.print_json(rows, sort_keys=False)  # in the registry's column order
    return 0
