"""The runtime stage: onnxruntime sessions, inputs, providers (CPU/CUDA), validation and
timing. Import the module you need (``fuser.runtime.sessions``, ``.validate``, ``.bench``)."""
