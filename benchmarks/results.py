"""The peer benchmark's report: RESULTS.md (tables, each headed by the command that made it)
and two PNG plots, from the plain data ``benchmarks.run`` collects."""

from __future__ import annotations

import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Speed-ups whose interval reaches above this are "not slower beyond noise".
NOISE = 0.97


def _label(row: dict) -> str:
    return f"{row['model']} ({row['framework']})"


def _entries(row: dict) -> list[dict]:
    return [row["entries"][name] for name in _order(row["entries"])]


def _order(names) -> list[str]:
    """Contestant names in the order of ``peers.CONTESTANTS`` (JSON sorts them)."""
    from benchmarks.peers import CONTESTANTS

    known = [c.name for c in CONTESTANTS if c.name in names]
    return known + sorted(n for n in names if n not in known)


def headline(row: dict, key: str = "seconds") -> dict:
    """fuser's optimization time against the fastest peer, and against the fastest peer that
    did the same job (no BatchNormalization left and at most as many nodes as fuser's
    output), on one model: (name, peer seconds, peer / fuser) or None. ``key``: "seconds"
    (in memory) or "file_seconds" (file to file: load, optimize, save)."""
    times = {e["contestant"]: _median(e[key]) for e in _entries(row)
             if e.get(key) and e["error"] is None}
    fuser = times.pop("fuser", None)
    mine = row["entries"].get("fuser", {}).get("graph")
    folded = {name: t for name, t in times.items() if mine and row["entries"][name]["graph"]
              and row["entries"][name]["graph"]["batchnorm"] == 0
              and row["entries"][name]["graph"]["nodes"] <= mine["nodes"]}
    out = {"fuser": fuser, "fastest": None, "fastest_folding": None}
    for key, pool in (("fastest", times), ("fastest_folding", folded)):
        if pool:
            name = min(pool, key=pool.get)
            out[key] = (name, pool[name], pool[name] / fuser if fuser else None)
    return out


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ratio(lat: dict | None) -> str:
    if not lat:
        return "-"
    return f"{lat['speedup']:.2f} [{lat['low']:.2f}, {lat['high']:.2f}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows)]


def markdown(data: dict) -> str:
    """RESULTS.md: setting, headline, then one table per measure, each headed by its command."""
    env, command = data["environment"], data["command"]
    names = _order(data["contestants"])
    made = f"Made by `{command}` ({env['date']}, {env['cpu']}, {env['cores']} cores)."
    lines = ["# fuser against the peers", "",
             f"`{command}` on {env['cpu']} ({env['cores']} physical cores), {env['platform']}, "
             f"Python {env['python']}, {env['date']}.", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".", "",
             "Models: fuser's zoo built with **seeded random weights** (fine for the exact "
             "pipeline: every measure here is structure, time or a numeric difference, none "
             "is accuracy) and exported with BatchNormalization kept (PyTorch: TorchScript "
             "exporter with TrainingMode.PRESERVE; Keras: tf2onnx with its BN folds off, so BN "
             "arrives as Mul + Add).", "", "Contestants:", ""]
    lines += [f"- **{n}** {data['contestants'][n]['version'] or ''}: "
              f"{data['contestants'][n]['what']}" for n in names]
    lines += [f"- **{n}**: missing, {reason}" for n, reason in data["missing"].items()]
    lines += [f"- model {m}: export failed ({reason}), skipped"
              for m, reason in data.get("export_failed", {}).items()]
    lines += _headline(data)
    lines += _time_table(data, names, made)
    lines += _files_table(data, names, made)
    lines += _graph_table(data, made)
    lines += _latency_table(data, made)
    lines += _never_slower(data)
    lines += _rss_table(data, made)
    lines += ["", *_realzoo()]
    lines += ["", *_lowrank()]
    return "\n".join(lines) + "\n"


def _headline(data: dict) -> list[str]:
    """The optimization-time ratio on the largest model, and the range over all models."""
    rows = [r for r in data["models"] if headline(r)["fuser"]]
    if not rows:
        return []
    big = max(rows, key=lambda r: r["original"]["params"])
    head = headline(big)
    lines = ["", "## Headline", ""]
    lats = [(r, r["entries"]["fuser"]["latency"]["all"]) for r in rows
            if r["entries"]["fuser"]["latency"].get("all")]
    if lats:
        slower = [f"{_label(r)} {_ratio(x)}" for r, x in lats if x["high"] < NOISE]
        lines.append(f"- **fuser's output against the original** at ORT_ENABLE_ALL, batch 1, "
                     f"over {len(lats)} models: speed-up {min(x['speedup'] for _, x in lats):.2f}"
                     f" to {max(x['speedup'] for _, x in lats):.2f} (medians; intervals in the "
                     f"latency table); slower beyond noise (whole interval below {NOISE}): "
                     + ("nowhere" if not slower else "; ".join(slower)) + ". This is the exact "
                     "pipeline without the timed check `optimize` runs by default (the rules "
                     "only); the check would roll back what costs time.")
    if head["fastest"]:
        name, peer, ratio = head["fastest"]
        verdict = "met" if ratio >= 5 else f"not met: {5 / ratio:.1f}x short"
        lines.append(f"- Optimization wall time on {_label(big)}, the largest model: fuser "
                     f"{head['fuser']:.2f} s, fastest peer {name} {peer:.2f} s: **{ratio:.1f}x** "
                     f"(target >= 5x: {verdict}); one in-memory copy of this model takes "
                     f"{big['copy_s']:.2f} s here, so fuser spends "
                     f"{head['fuser'] / max(big['copy_s'], 1e-9):.1f} copies' worth of time.")
        if ratio < 5:
            lines.append(
                "  Where fuser's time goes on such a model (`python -m benchmarks.pass_time`, "
                "README \"Speed of the optimizer itself\"): the passes only match and record; "
                "each folded weight is computed on export, read out of the input protobuf "
                "once (protobuf has no zero-copy view), scaled in float64 block by block in "
                "cache and written once into the bytes that protobuf then copies into the "
                "output model. What is left: that float64 arithmetic (~0.1 s for 60 M weights "
                "here), those copies, onnx-graphsurgeon's import and export in Python, and the "
                "output's own memory: 240 MB that no tool returning a new model can avoid "
                "touching, and which is slow to touch fresh on this virtual machine (~0.25 s "
                "for 240 MB of new pages, 59k page faults, measured alone; more as a process "
                "grows: the suite keeps every tool's output alive, so its times vary more "
                "than one tool per fresh process, as in the peak-memory table).")
    files = headline(big, "file_seconds")
    if files["fuser"] and files["fastest"]:
        name, peer, ratio = files["fastest"]
        lines.append(f"- File to file (load the file, optimize, save; same run) on "
                     f"{_label(big)}: fuser {files['fuser']:.3f} s, fastest peer {name} "
                     f"{peer:.3f} s: **{ratio:.1f}x** (in memory, above, onnxruntime's time "
                     "includes serializing the input and reading its output back; fuser's "
                     "does not).")
    ratios = [headline(r)["fastest"][2] for r in rows if headline(r)["fastest"]]
    if ratios:
        lines.append(f"- Fastest peer / fuser over all {len(ratios)} models: "
                     f"{min(ratios):.1f}x to {max(ratios):.1f}x.")
    versus = [r["entries"]["fuser"]["latency"]["all"]["median_ms"]
              / r["entries"]["ort-basic"]["latency"]["all"]["median_ms"] for r in rows
              if r["entries"]["fuser"]["latency"].get("all")
              and r["entries"].get("ort-basic", {}).get("latency", {}).get("all")]
    if versus:
        lines.append(f"- fuser's output against onnxruntime's own BASIC offline model at "
                     f"ORT_ENABLE_ALL: median ratio {min(versus):.2f} to {max(versus):.2f} "
                     f"(1.00 = as fast, < 1 = fuser faster).")
    return lines


def _time_table(data: dict, names: list[str], made: str) -> list[str]:
    lines = ["", "## Optimization wall time", "", made + f" Median of {data['runs']} runs "
             "in one process on an already-loaded model; every run gets a fresh copy parsed "
             "outside the timed region; runs of the tools are interleaved. Load (onnx.load of "
             "the file) is separate, saving is in the next table; `copy` is the time to parse "
             "one fresh copy of the model in memory (what touching every weight once costs "
             "here). Seconds.", ""]
    rows = [[_label(row), _fmt_s(row["load_s"]), _fmt_s(row["copy_s"]),
             *_tool_cells(row, names, "seconds", "error")] for row in data["models"]]
    return lines + _table(["model", "load", "copy", *names, "fastest peer / fuser",
                           "fastest peer as small as fuser / fuser"], rows)


def _tool_cells(row: dict, names: list[str], key: str, error: str) -> list[str]:
    """Each tool's median seconds, then the two ratios of ``headline``."""
    head, cells = headline(row, key), []
    for name in names:
        entry = row["entries"].get(name)
        cells.append("failed" if entry and entry.get(error) and not entry.get(key)
                     else _fmt_s(_median(entry[key]) if entry and entry.get(key) else None))
    for which in ("fastest", "fastest_folding"):
        cells.append(f"{head[which][2]:.1f}x ({head[which][0]})" if head[which] and
                     head[which][2] else "-")
    return cells


def _files_table(data: dict, names: list[str], made: str) -> list[str]:
    """Load + optimize + save per tool, as a user runs it on files (older results: none)."""
    if not any(e.get("file_seconds") for r in data["models"] for e in r["entries"].values()):
        return []
    lines = ["", "## File to file", "", made + f" Median of {data['runs']} runs in the same "
             "process and run as the table above, interleaved: load the model file, optimize, "
             "save the result (onnx.load / onnx.save around each peer's Python API; fuser: "
             "fuser.optimize(path) and fuser.save, as its CLI does; ort-basic: a session that "
             "reads the file and writes optimized_model_filepath). Seconds.", ""]
    rows = [[_label(row), *_tool_cells(row, names, "file_seconds", "file_error")]
            for row in data["models"]]
    return lines + _table(["model", *names, "fastest peer / fuser",
                           "fastest peer as small as fuser / fuser"], rows)


def _graph_table(data: dict, made: str) -> list[str]:
    lines = ["", "## What each tool produced", "", made + " Nodes, BatchNormalization "
             "left, parameters, file size and save time of the output; numeric difference "
             "against the original on onnxruntime CPU with graph optimizations off (2 seeded "
             "batches); `exact` = within fuser's exact tolerances.", ""]
    rows = []
    for row in data["models"]:
        g = row["original"]
        rows.append([_label(row), "original", str(g["nodes"]), str(g["batchnorm"]),
                     f"{g['params']:,}", f"{g['file_bytes'] / 2**20:.1f}", "-", "-", "-"])
        for e in _entries(row):
            if e["graph"] is None:
                rows.append([_label(row), e["contestant"], *["-"] * 6, e["error"] or "-"])
                continue
            g = e["graph"]
            diff = "-" if e["max_abs_diff"] is None else f"{e['max_abs_diff']:.1e}"
            exact = e["error"] or ("yes" if e["exact"] else "no")
            rows.append([_label(row), e["contestant"], str(g["nodes"]), str(g["batchnorm"]),
                         f"{g['params']:,}", f"{g['file_bytes'] / 2**20:.1f}",
                         _fmt_s(e["save_s"]), diff, exact])
    return lines + _table(["model", "tool", "nodes", "BN", "params", "MB", "save s",
                           "max abs diff", "exact"], rows)


def _latency_table(data: dict, made: str) -> list[str]:
    lines = ["", "## onnxruntime CPU latency", "", made + " Batch 1, "
             f"{data['latency_budget']:.0f} s of interleaved rounds per level (at least 10), "
             "the original and every output in the same run. Speed-up = original median / "
             "output median (> 1 faster) [paired bootstrap 95 % interval]. `fuser / "
             "ort-basic` = ratio of their medians at ORT_ENABLE_ALL (1.00: as fast).", ""]
    rows = []
    for row in data["models"]:
        ms = row["original_ms"]
        rows.append([_label(row), "original", f"{ms.get('disable', math.nan):.2f} ms",
                     f"{ms.get('all', math.nan):.2f} ms", "-"])
        basic = row["entries"].get("ort-basic", {}).get("latency", {}).get("all")
        for e in _entries(row):
            lat = e["latency"]
            versus = f"{lat['all']['median_ms'] / basic['median_ms']:.2f}" \
                if e["contestant"] == "fuser" and basic and lat.get("all") else "-"
            rows.append([_label(row), e["contestant"], _ratio(lat.get("disable")),
                         _ratio(lat.get("all")), versus])
    return lines + _table(["model", "tool", "ORT_DISABLE_ALL", "ORT_ENABLE_ALL",
                           "fuser / ort-basic"], rows)


def _rss_table(data: dict, made: str) -> list[str]:
    if not data.get("rss"):
        return []
    head = f"Made by `{data['rss']['command']}`." if data["rss"].get("command") else made
    lines = ["", "## Peak memory of the optimization", "", head + f" On "
             f"{data['rss']['model']}, the largest model, one fresh process per tool "
             "(`python -m benchmarks.rss TOOL MODEL`): the RSS high-water mark (VmHWM) after "
             "loading the model and after the optimization, MB.", ""]
    tools = data["rss"]["tools"]
    rows = [[name, *(("-", "-", "-", r["error"]) if "error" in r else (
        f"{r['loaded_mb']:.0f}", f"{r['peak_mb']:.0f}", f"{r['extra_mb']:.0f}",
        f"{r['seconds']:.2f} s"))] for name, r in ((n, tools[n]) for n in _order(tools))]
    return lines + _table(["tool", "after load", "peak", "peak - load", "time (this run)"], rows)


def _never_slower(data: dict) -> list[str]:
    """fuser's output against the original at ORT_ENABLE_ALL: slower beyond noise anywhere?"""
    slower = [f"{_label(r)} {_ratio(r['entries']['fuser']['latency'].get('all'))}"
              for r in data["models"] if "fuser" in r["entries"]
              and r["entries"]["fuser"]["latency"].get("all")
              and r["entries"]["fuser"]["latency"]["all"]["high"] < NOISE]
    verdict = "nowhere" if not slower else "on " + "; ".join(slower)
    return ["", f"fuser's output slower than the original at ORT_ENABLE_ALL beyond noise (whole "
            f"95 % interval below {NOISE}): {verdict}."]


def _realzoo() -> list[str]:
    """Node counts on trained models from public packages, from their own benchmark's last run
    (REALZOO.md: same fixed input shapes for every tool)."""
    source = HERE / "REALZOO.md"
    lines = ["## Trained models from public packages: node counts", ""]
    if not source.exists():
        return [*lines, "Run `python -m benchmarks.realzoo` (benchmarks/REALZOO.md)."]
    text = source.read_text().splitlines()
    table = []
    for line in text:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append(line)
    stamp = next((line.rstrip() for line in text if line.startswith("Date:")), "")
    return [*lines, "The zoo above has random weights and fuser's own exports; these are "
            "exports of trained CNNs shipped inside PyPI packages (PyTorch, Keras `.h5`, "
            "paddle2onnx), every tool at the same fixed input shapes. From "
            f"[REALZOO.md](REALZOO.md) (`python -m benchmarks.realzoo`, {stamp}), where each "
            "model, its source and its task metric are described:", "", *table]


def _lowrank() -> list[str]:
    """The low-rank Pareto table, from its own benchmark's last run (LOWRANK.md)."""
    source = HERE / "LOWRANK.md"
    lines = ["## Low-rank rewrites (lossy)", ""]
    if not source.exists():
        return [*lines, "Run `python -m benchmarks.lowrank` (benchmarks/LOWRANK.md)."]
    text = source.read_text().splitlines()
    intro = next((line for line in text if line.startswith("`python -m benchmarks.lowrank")), "")
    table = [line for line in text if line.startswith("|")]
    return [*lines, "No peer rewrites layers into low-rank factors, so this part compares "
            "fuser with the original only. From [LOWRANK.md](LOWRANK.md) (plot: "
            "[lowrank_pareto.png](lowrank_pareto.png)), made by its own command:", "",
            intro, "", *table]


def write(data: dict, out: Path) -> None:
    """RESULTS.md and the plots into ``out``."""
    from benchmarks.plots import plots

    text = markdown(data)
    text += "\n## Plots\n\n![optimization time](results_time.png)\n\n" \
            "![latency](results_latency.png)\n"
    plots(data, out)
    (out / "RESULTS.md").write_text(text)
