"""Training: splits, class imbalance, LightGBM and any scikit-learn estimator, stateless and
stateful (warm-start) fits, the evaluation report, and the gate before promotion."""

from loopml.training._encoding import Encoding
from loopml.training._gate import Check, Verdict
from loopml.training._imbalance import compare_imbalance
from loopml.training._model import LIGHTGBM, Model
from loopml.training._report import higher_is_better, primary_metric
from loopml.training._service import Models, TrainResult
from loopml.training._split import Split, split
from loopml.training._train import Trained, fit
from loopml.training._verified import VerifiedVersion

__all__ = [
    "LIGHTGBM",
    "Check",
    "Encoding",
    "Model",
    "Models",
    "Split",
    "TrainResult",
    "Trained",
    "Verdict",
    "VerifiedVersion",
    "compare_imbalance",
    "fit",
    "higher_is_better",
    "primary_metric",
    "split",
]
