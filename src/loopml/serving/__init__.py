"""Serving: the compiled row predictor; dynamic, static and hybrid modes; a fallback under a
latency budget with a circuit breaker; consistency; hot swap; the prediction log; the HTTP app
(``/predict`` and the Open Inference Protocol)."""

from typing import TYPE_CHECKING

from loopml._lazy import lazy_attributes

if TYPE_CHECKING:
    from loopml.monitoring import predictions_stream
    from loopml.serving._advice import KeptAdvice, load_advice, save_advice
    from loopml.serving._advisor import Advice, Rule, advise, top_keys
    from loopml.serving._app import create_app
    from loopml.serving._batch import predict_file
    from loopml.serving._engine import Breaker, Engine, Prediction, static_table
    from loopml.serving._errors import classify
    from loopml.serving._holder import ModelHolder, Served
    from loopml.serving._log import PredictionLogger
    from loopml.serving._parts import ServingParts, serving_parts
    from loopml.serving._predictor import RowPredictor
    from loopml.serving._runtime import Runtime
    from loopml.serving._service import Serving

# Each name loads its own module on first use: the row predictor needs neither FastAPI nor the
# stores, and the HTTP app (FastAPI, uvicorn) is loaded only by what serves HTTP.
__getattr__ = lazy_attributes(
    __name__,
    {
        "predictions_stream": "loopml.monitoring",
        **dict.fromkeys(("Advice", "Rule", "advise", "top_keys"), "loopml.serving._advisor"),
        **dict.fromkeys(("KeptAdvice", "load_advice", "save_advice"), "loopml.serving._advice"),
        **dict.fromkeys(("ServingParts", "serving_parts"), "loopml.serving._parts"),
        "create_app": "loopml.serving._app",
        "predict_file": "loopml.serving._batch",
        "classify": "loopml.serving._errors",
        **dict.fromkeys(
            ("Breaker", "Engine", "Prediction", "static_table"), "loopml.serving._engine"
        ),
        **dict.fromkeys(("ModelHolder", "Served"), "loopml.serving._holder"),
        "PredictionLogger": "loopml.serving._log",
        "RowPredictor": "loopml.serving._predictor",
        "Runtime": "loopml.serving._runtime",
        "Serving": "loopml.serving._service",
    },
)

__all__ = [
    "Advice",
    "Breaker",
    "Engine",
    "KeptAdvice",
    "ModelHolder",
    "Prediction",
    "PredictionLogger",
    "RowPredictor",
    "Rule",
    "Runtime",
    "Served",
    "Serving",
    "ServingParts",
    "advise",
    "classify",
    "create_app",
    "load_advice",
    "predict_file",
    "predictions_stream",
    "save_advice",
    "serving_parts",
    "static_table",
    "top_keys",
]
