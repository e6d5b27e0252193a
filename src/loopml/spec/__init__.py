"""The project spec, ``loopml.yaml``, as pydantic models.

>>> spec = parse_spec("project: demo\\nsources:\\n  flights: {format: csv}\\n")
>>> spec.sources["flights"].schema_.on_change
'hold'
"""

from loopml.spec._features import (
    AGGREGATES,
    EntitySpec,
    EventSpec,
    FeaturesSpec,
    LabelSpec,
    LookupSpec,
    WindowSpec,
)
from loopml.spec._load import SPEC_FILE, load_spec, parse_spec, spec_json_schema
from loopml.spec._model import (
    BehaviourSpec,
    GateSpec,
    ImbalanceSpec,
    MetricBound,
    ModelSpec,
    SplitSpec,
    Task,
    WarmStartSpec,
)
from loopml.spec._models import (
    CheckSpec,
    ColumnSpec,
    CsvOptions,
    Format,
    LogicalType,
    ProjectSpec,
    SchemaPolicy,
    SourceSpec,
    UnseenPolicy,
    check_source_name,
)
from loopml.spec._monitoring import (
    AlertRule,
    DriftSpec,
    MonitoringSpec,
    PerformanceSpec,
    SinksSpec,
)
from loopml.spec._serving import (
    BreakerSpec,
    ConsistencySpec,
    FallbackSpec,
    HybridSpec,
    LogSpec,
    ServingSpec,
    StaticSpec,
)
from loopml.spec._storage import (
    EventsConfig,
    FilesConfig,
    MetadataConfig,
    OnlineConfig,
    PostgresConfig,
    RedisConfig,
    SQLiteConfig,
    StorageSpec,
)
from loopml.spec._template import example_spec
from loopml.spec._types import (
    NAME_PATTERN,
    SOURCE_PATTERN,
    Duration,
    format_duration,
    parse_duration,
)

__all__ = [
    "AGGREGATES",
    "NAME_PATTERN",
    "SOURCE_PATTERN",
    "SPEC_FILE",
    "AlertRule",
    "BehaviourSpec",
    "BreakerSpec",
    "CheckSpec",
    "ColumnSpec",
    "ConsistencySpec",
    "CsvOptions",
    "DriftSpec",
    "Duration",
    "EntitySpec",
    "EventSpec",
    "EventsConfig",
    "FallbackSpec",
    "FeaturesSpec",
    "FilesConfig",
    "Format",
    "GateSpec",
    "HybridSpec",
    "ImbalanceSpec",
    "LabelSpec",
    "LogSpec",
    "LogicalType",
    "LookupSpec",
    "MetadataConfig",
    "MetricBound",
    "ModelSpec",
    "MonitoringSpec",
    "OnlineConfig",
    "PerformanceSpec",
    "PostgresConfig",
    "ProjectSpec",
    "RedisConfig",
    "SQLiteConfig",
    "SchemaPolicy",
    "ServingSpec",
    "SinksSpec",
    "SourceSpec",
    "SplitSpec",
    "StaticSpec",
    "StorageSpec",
    "Task",
    "UnseenPolicy",
    "WarmStartSpec",
    "WindowSpec",
    "check_source_name",
    "example_spec",
    "format_duration",
    "load_spec",
    "parse_duration",
    "parse_spec",
    "spec_json_schema",
]
