"""Is a standalone BatchNormalization faster as BN or as Mul + Add on onnxruntime CPU?

    python benchmarks/standalone_batchnorm.py [--rounds 300] [--threads 2]

Interleaves the two single-op models round by round and prints the median latency (µs) of
each at ORT_DISABLE_ALL and ORT_ENABLE_ALL. The answer decides whether the
``batchnorm-to-affine`` pass belongs in the default pipeline (it does not: see its docstring).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnx

from fuser.runtime import sessions as runtime

SHAPES = [(1, 64, 56, 56), (1, 256, 14, 14), (8, 64, 56, 56)]


def _model(body: str, dims: str, initializers: dict[str, np.ndarray]) -> onnx.ModelProto:
    model = onnx.parser.parse_model(f"""< ir_version: 8, opset_import: ["" : 17] >
        g (float[{dims}] x) => (float[{dims}] y) {{ {body} }}""")
    for name, values in initializers.items():
        model.graph.initializer.append(onnx.numpy_helper.from_array(values, name))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| shape | level | BatchNormalization µs | Mul + Add µs |")
    print("|---|---|---|---|")
    for shape in SHAPES:
        c, dims = shape[1], ",".join(map(str, shape))
        vec = [rng.uniform(0.5, 1.5, c).astype(np.float32) for _ in range(4)]
        models = {
            "bn": _model("y = BatchNormalization(x, s, b, m, v)", dims,
                         dict(zip("sbmv", vec, strict=True))),
            "muladd": _model("t = Mul(x, s)\n y = Add(t, b)", dims,
                             {"s": vec[0].reshape(c, 1, 1), "b": vec[1].reshape(c, 1, 1)}),
        }
        feeds = {"x": rng.standard_normal(shape).astype(np.float32)}
        for level in ("disable", "all"):
            sessions = {k: runtime.session(m, level=level, threads=args.threads)
                        for k, m in models.items()}
            times: dict[str, list[float]] = {k: [] for k in sessions}
            for _ in range(20):
                for sess in sessions.values():
                    sess.run(None, feeds)
            for _ in range(args.rounds):
                for key, sess in sessions.items():
                    start = time.perf_counter()
                    sess.run(None, feeds)
                    times[key].append(time.perf_counter() - start)
            med = {k: np.median(v) * 1e6 for k, v in times.items()}
            print(f"| {'x'.join(map(str, shape))} | {level} | {med['bn']:.1f} | "
                  f"{med['muladd']:.1f} |")


if __name__ == "__main__":
    main()
