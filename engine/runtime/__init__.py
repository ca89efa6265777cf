"""onnxruntime engine: sessions, the decode loop, the Separator protocol and the two separators."""
