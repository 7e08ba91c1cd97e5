"""The model: network, model file format, store of loaded models, shipped models, the inner-loop fit."""
