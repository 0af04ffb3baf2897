import onnx, numpy as np, onnxruntime as ort, time
from onnx import numpy_helper
def mk(text, inits):
    m = onnx.parser.parse_model(text)
    for k,v in inits.items(): m.graph.initializer.append(numpy_helper.from_array(v,k))
    return m.SerializeToString()
rng=np.random.default_rng(0)
for shape in [(1,64,56,56),(1,256,14,14),(8,64,56,56)]:
    C=shape[1]; sh="x".join(map(str,shape)); dims=",".join(map(str,shape))
    bn = mk(f"""<ir_version: 8, opset_import: ["" : 17]> g (float[{dims}] x) => (float[{dims}] y) {{ y = BatchNormalization(x, s, b, m, v) }}""",
        dict(s=rng.random(C,dtype=np.float32)+.5,b=rng.random(C,dtype=np.float32),m=rng.random(C,dtype=np.float32),v=rng.random(C,dtype=np.float32)+.5))
    ma = mk(f"""<ir_version: 8, opset_import: ["" : 17]> g (float[{dims}] x) => (float[{dims}] y) {{ t = Mul(x, s) y = Add(t, b) }}""",
        dict(s=rng.random((C,1,1),dtype=np.float32),b=rng.random((C,1,1),dtype=np.float32)))
    x = rng.standard_normal(shape).astype(np.float32)
    for level in [ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL]:
        res={}
        sess={}
        for name,m in [("bn",bn),("muladd",ma)]:
            so=ort.SessionOptions(); so.graph_optimization_level=level; so.intra_op_num_threads=2
            sess[name]=ort.InferenceSession(m, so, providers=["CPUExecutionProvider"])
            for _ in range(20): sess[name].run(None,{"x":x})
        times={k:[] for k in sess}
        for r in range(300):
            for k,s in sess.items():
                t=time.perf_counter(); s.run(None,{"x":x}); times[k].append(time.perf_counter()-t)
        print(sh, level, {k: round(np.median(v)*1e6,1) for k,v in times.items()})
