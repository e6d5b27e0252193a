"""Telling the kinds of shift apart (Huyen, chapter 8), from what one window shows.

- **Label shift**: P(y) changed while P(x | y) did not. The label distribution drifted and the
  features, tested within each class against the reference's class-conditional counts, did not.
  Features may drift overall (they follow the new class mix); that is explained, not covariate.
- **Covariate shift**: P(x) changed, not explained by a label shift.
- **Concept drift**: P(y | x) changed: the model's probabilities no longer match the outcomes
  (observed positive rate against predicted, beyond chance and beyond the reference's own
  variation), or performance decayed while the inputs are stable. Not claimed when a label
  shift explains the miscalibration.

Label and concept shifts need labels; before they arrive, only covariate shift and prediction
drift can be seen, and the report says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from loopml.monitoring._drift import ColumnDrift, DriftResult


@dataclass
class Shift:
    covariate: bool = False
    label: bool = False
    concept: bool = False
    prediction: bool = False
    labels_known: bool = False
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        return [k for k in ("covariate", "label", "concept") if getattr(self, k)]

    def summary(self) -> str:
        if not self.kinds:
            text = "no shift"
            if self.prediction:
                text = "prediction drift only"
        else:
            text = " + ".join(
                f"{k} shift" if k != "concept" else "concept drift" for k in self.kinds
            )
        if not self.labels_known:
            # no labels, or fewer than drift.min_rows known by the window's end
            text += " (no labels, or too few: label shift and concept drift cannot be told)"
        return text

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kinds"] = self.kinds
        out["summary"] = self.summary()
        return out


def classify(
    *,
    features: DriftResult,
    prediction: ColumnDrift | None,
    label: ColumnDrift | None,
    conditional: DriftResult | None,
    decayed: bool | None,
    calibration: dict[str, float] | None,
    calibration_limit: float | None,
    alpha: float,
) -> Shift:
    """The kinds of shift one window shows."""
    feature_drift = bool(features.drifted)
    labels_known = label is not None
    label_drift = bool(label is not None and label.drifted)
    conditional_stable = bool(
        conditional is not None and conditional.columns and not conditional.drifted
    )
    calibrated = True
    if calibration and calibration.get("p_value") is not None:
        gap = abs(calibration.get("gap", 0.0))
        calibrated = not (calibration["p_value"] < alpha and gap > (calibration_limit or 0.0))
    label_shift = label_drift and conditional_stable
    concept = (not calibrated or bool(decayed and not feature_drift)) and not label_shift
    return Shift(
        covariate=feature_drift and not label_shift,
        label=label_shift,
        concept=bool(concept and labels_known),
        prediction=bool(prediction is not None and prediction.drifted),
        labels_known=labels_known,
        evidence={
            "features_drifted": features.drifted,
            "label_drifted": label_drift,
            "conditional_drifted": conditional.drifted if conditional is not None else None,
            "calibrated": calibrated if calibration else None,
            "calibration_gap": calibration.get("gap") if calibration else None,
            "calibration_limit": calibration_limit,
            "decayed": decayed,
        },
    )
