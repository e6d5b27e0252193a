"""Features: one definition for training and serving.

Definitions come from ``loopml.yaml`` (entities; request, lookup, window and derived features; the
label). :func:`build_feature_set` resolves them against the sources' schemas; training sets are
built point-in-time correct in DuckDB; the online path computes one request's vector from the
online store with the same expressions; the stream consumer lands events and updates the store.
"""

from typing import TYPE_CHECKING

from loopml._lazy import lazy_attributes
from loopml.features._expr import ExprType, Node, arrow_type, expr_type_of, parse
from loopml.features._expression import Expression, compile_expression
from loopml.features._flags import (
    FLAGS,
    FROM_CACHE,
    MISSING_CATEGORY,
    NEWER_THAN_EVENT,
    OLDER_THAN_TTL,
    STALE_STORE,
    UNSEEN_CATEGORY,
    Flags,
)
from loopml.features._keys import encode_key

if TYPE_CHECKING:
    from loopml.features._definitions import (
        Feature,
        FeatureSet,
        Lookup,
        Window,
        build_feature_set,
    )
    from loopml.features._offline import TrainingSet, describe, request_events, with_label
    from loopml.features._online import OnlineFeatures, to_micros
    from loopml.features._service import Features, sampler
    from loopml.features._stream import (
        StepResult,
        StreamConsumer,
        publish,
        read_rows,
        stream_name,
    )

# The expression language and the entity keys are pure (Arrow, numpy). Definitions read the data
# schema, training sets run in DuckDB, the online and stream parts read the stores: loaded on
# first use, so that `from loopml.features import compile_expression` needs no storage.
__getattr__ = lazy_attributes(
    __name__,
    {
        **dict.fromkeys(
            ("Feature", "FeatureSet", "Lookup", "Window", "build_feature_set"),
            "loopml.features._definitions",
        ),
        "TrainingSet": "loopml.features._offline",
        "describe": "loopml.features._offline",
        "request_events": "loopml.features._offline",
        "with_label": "loopml.features._offline",
        "OnlineFeatures": "loopml.features._online",
        "to_micros": "loopml.features._online",
        "Features": "loopml.features._service",
        "sampler": "loopml.features._service",
        **dict.fromkeys(
            ("StepResult", "StreamConsumer", "publish", "read_rows", "stream_name"),
            "loopml.features._stream",
        ),
    },
)

__all__ = [
    "FLAGS",
    "FROM_CACHE",
    "MISSING_CATEGORY",
    "NEWER_THAN_EVENT",
    "OLDER_THAN_TTL",
    "STALE_STORE",
    "UNSEEN_CATEGORY",
    "ExprType",
    "Expression",
    "Feature",
    "FeatureSet",
    "Features",
    "Flags",
    "Lookup",
    "Node",
    "OnlineFeatures",
    "StepResult",
    "StreamConsumer",
    "TrainingSet",
    "Window",
    "arrow_type",
    "build_feature_set",
    "compile_expression",
    "describe",
    "encode_key",
    "expr_type_of",
    "parse",
    "publish",
    "read_rows",
    "request_events",
    "sampler",
    "stream_name",
    "to_micros",
    "with_label",
]
