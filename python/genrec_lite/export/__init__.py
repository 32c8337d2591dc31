"""Export: a trained checkpoint -> a serving bundle (GGUF, ONNX, SID table, manifest)."""
