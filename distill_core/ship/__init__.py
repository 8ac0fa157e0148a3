"""Shipping: the model interface (texts -> probabilities), ONNX export, the HTTP service, load tests, model cards."""
