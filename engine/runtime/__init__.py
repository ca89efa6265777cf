"""onnxruntime engine: sessions, the decode loop and the Separator API."""
