"""The project spec, ``loopml.yaml``, as pydantic models.

>>> spec = parse_spec("project: demo\\nsources:\\n  flights: {format: csv}\\n")
>>> spec.sources["flights"].schema_.on_change
'hold'
"""

from loopml.spec._load import SPEC_FILE, load_spec, parse_spec, spec_json_schema
from loopml.spec._models import (
    NAME_PATTERN,
    SOURCE_PATTERN,
    CheckSpec,
    ColumnSpec,
    CsvOptions,
    Duration,
    Format,
    LogicalType,
    ProjectSpec,
    SchemaPolicy,
    SourceSpec,
    UnseenPolicy,
    check_source_name,
    format_duration,
    parse_duration,
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

__all__ = [
    "NAME_PATTERN",
    "SOURCE_PATTERN",
    "SPEC_FILE",
    "CheckSpec",
    "ColumnSpec",
    "CsvOptions",
    "Duration",
    "EventsConfig",
    "FilesConfig",
    "Format",
    "LogicalType",
    "MetadataConfig",
    "OnlineConfig",
    "PostgresConfig",
    "ProjectSpec",
    "RedisConfig",
    "SQLiteConfig",
    "SchemaPolicy",
    "SourceSpec",
    "StorageSpec",
    "UnseenPolicy",
    "check_source_name",
    "example_spec",
    "format_duration",
    "load_spec",
    "parse_duration",
    "parse_spec",
    "spec_json_schema",
]
