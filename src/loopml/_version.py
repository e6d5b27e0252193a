"""The package version, in a module of its own: a part of loopml that reports it (the serving
app's Open Inference Protocol metadata) reads it without importing the package root, whose
lazy names reach the composition root."""

__version__ = "0.1.0"
