"""Serving: the compiled row predictor; dynamic, static and hybrid modes; a fallback under a
latency budget with a circuit breaker; consistency; hot swap; the prediction log; the HTTP app
(``/predict`` and the Open Inference Protocol)."""

from loopml.monitoring._log import predictions_stream
from loopml.serving._advisor import Advice, advise, top_keys
from loopml.serving._app import create_app
from loopml.serving._batch import predict_file
from loopml.serving._engine import Breaker, Engine, Prediction, static_table
from loopml.serving._holder import ModelHolder, Served
from loopml.serving._log import PredictionLogger
from loopml.serving._predictor import RowPredictor
from loopml.serving._runtime import Runtime
from loopml.serving._service import Serving

__all__ = [
    "Advice",
    "Breaker",
    "Engine",
    "ModelHolder",
    "Prediction",
    "PredictionLogger",
    "RowPredictor",
    "Runtime",
    "Served",
    "Serving",
    "advise",
    "create_app",
    "predict_file",
    "predictions_stream",
    "static_table",
    "top_keys",
]
