"""The commented example that ``loopml init`` writes."""

from __future__ import annotations

EXAMPLE_SPEC = """\
# loopml project spec. Every key is documented in the JSON Schema that
# `loopml spec json-schema` prints; point your editor's YAML support at it:
# yaml-language-server: $schema=.loopml/spec.schema.json
project: {name}

# Where each storage role lives. Relative paths are relative to this folder.
# The embedded defaults need no server; switch a role to a server by URL.
storage:
  metadata: sqlite:///.loopml/metadata.db     # or postgresql://user@host:5432/db?schema={name}
  lake: .loopml/lake                          # Parquet batches; any fsspec URL works
  artifacts: .loopml/artifacts                # content-addressed model files
  online: sqlite:///.loopml/online.db         # or redis://127.0.0.1:6379/0?prefix={name}
  events: sqlite:///.loopml/events.db         # or redis://127.0.0.1:6379/0?prefix={name}

# Sources of data. `loopml ingest SOURCE FILE...` also creates a source that is
# not declared here, inferring everything from its first file.
sources:
  flights:
    format: csv                   # csv (also .csv.gz), parquet or jsonl
    path: data/flights/*.csv      # what `loopml ingest flights` reads with no FILE
    timestamp: time_hour          # each row's event time
    entity_keys: [carrier, origin, dest]
    primary_key: [time_hour, carrier, flight]   # duplicates are quarantined
    schema:
      on_change: hold             # new columns / wider types wait for `loopml schema accept`
      unseen_categories: warn     # or quarantine
      columns:                    # declarations override what is inferred
        distance: {{min: 0, max: 6000}}
        carrier: {{unseen: quarantine}}
    checks:
      max_future: 1d              # timestamps later than now + 1 day are quarantined
      not_before: 1990-01-01      # and so are timestamps before this
      row_count_ratio: 10         # a batch 10x above or below recent ones is held whole
      null_rate_increase: 0.3     # so is one whose null rate jumps by more than 0.3
"""


def example_spec(name: str) -> str:
    """The example spec for a project called ``name``."""
    return EXAMPLE_SPEC.format(name=name)
