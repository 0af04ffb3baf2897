"""Built-in models: synthetic ONNX graphs (no framework needed) and, later, the zoo."""
