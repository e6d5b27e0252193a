"""Model evaluation (Designing Machine Learning Systems, chapter 6): metrics per task, baselines,
slice-based evaluation, calibration, decision thresholds, permutation importance and the
behavioural tests (perturbation, invariance, directional expectation).

Pure functions on numpy arrays and pyarrow Tables; bad arguments raise
:class:`~loopml.errors.UsageError` naming the argument. Metrics agree with scikit-learn's (its
test suite checks them) but are computed with numpy, so slicing a test set costs little.

>>> m = metrics("regression", [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
>>> m["mae"], m["rmse"] ** 2
(0.3333333333333333, 0.3333333333333333)
"""

from loopml.evaluation._baselines import baselines
from loopml.evaluation._behaviour import directional_test, invariance_test, perturbation_test
from loopml.evaluation._calibration import calibration_curve, expected_calibration_error
from loopml.evaluation._importance import permutation_importance
from loopml.evaluation._metrics import higher_is_better, metrics
from loopml.evaluation._slices import slice_metrics, worst_slices
from loopml.evaluation._threshold import best_threshold

__all__ = [
    "baselines",
    "best_threshold",
    "calibration_curve",
    "directional_test",
    "expected_calibration_error",
    "higher_is_better",
    "invariance_test",
    "metrics",
    "permutation_importance",
    "perturbation_test",
    "slice_metrics",
    "worst_slices",
]
