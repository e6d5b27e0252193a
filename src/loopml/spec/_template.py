"""The commented template that ``loopml init`` writes when it is given no data file.

Everything the template shows about data is commented out: a fresh project declares nothing it
has not seen. ``loopml init --from FILE`` drafts the same sections from a real file instead.
"""

from __future__ import annotations

SCHEMA_FILE = ".loopml/spec.schema.json"

SCHEMA_COMMENT = f"""\
# Every key is documented in the JSON Schema that `loopml spec json-schema` prints. loopml init
# wrote it to {SCHEMA_FILE}; refresh it after an upgrade with
# `loopml spec json-schema --out {SCHEMA_FILE}`. Editors' YAML support reads this line:
# yaml-language-server: $schema={SCHEMA_FILE}
"""
STORAGE = """\
# Where each storage role lives. Relative paths are relative to this folder.
# The embedded defaults need no server; switch a role to a server by URL.
storage:
  metadata: sqlite:///.loopml/metadata.db     # or postgresql://user@host:5432/db?schema={name}
  lake: .loopml/lake                          # Parquet batches; any fsspec URL works
  artifacts: .loopml/artifacts                # content-addressed model files
  online: sqlite:///.loopml/online.db         # or redis://127.0.0.1:6379/0?prefix={name}
  events: sqlite:///.loopml/events.db         # or redis://127.0.0.1:6379/0?prefix={name}
"""

# The sections of a whole project, on an example: valid YAML (a test parses it), written into the
# template commented out.
EXAMPLE_SECTIONS = """\
sources:
  orders:
    format: csv                   # csv (also .csv.gz, .tsv), parquet or jsonl
    path: data/orders/*.csv       # what `loopml ingest orders` reads when given no FILE
    timestamp: created_at         # each row's event time
    entity_keys: [customer_id]    # the things a row is about
    primary_key: [order_id]       # duplicates are quarantined
    schema:
      on_change: hold             # new columns / wider types wait for `loopml schema accept`
      unseen_categories: warn     # or quarantine
      columns:                    # declarations override what is inferred
        order_id: {role: id}      # an identifier: never categories, never a range
        customer_id: {role: id}
        amount: {type: float64, min: 0}
        country: {categories: open}   # text whose values keep growing: no unseen warnings
        status: {categories: [new, paid, shipped, returned], unseen: quarantine}
    checks:
      max_future: 1d              # timestamps later than now + 1 day are quarantined

# Named join keys (entity -> its key columns), for lookups and windows.
entities:
  customer: [customer_id]

# One definition of every feature, for training sets and requests alike.
features:
  event: {source: orders}         # the rows a prediction is about
  request: [created_at, customer_id, amount, country]   # columns that arrive with a request
  windows:
    customer_orders:              # the customer's earlier orders
      source: orders
      entity: customer
      windows: [7d, 30d]          # features customer_orders_orders_7d, ..._30d
      tile: 1h
      aggregates: {orders: count, spent: sum(amount)}
  derived:
    log_amount: "log1p(amount)"
  label:                          # what the model predicts, and when it becomes known
    name: returned
    expr: "status == 'returned'"
    delay: 30d

# The model: LightGBM by default, or any scikit-learn estimator as module:Class.
model:
  name: returns
  task: binary                    # binary, multiclass, regression or ranking
  split: {method: time, test: 0.2, valid: 0.1}   # the latest 20% of events are the test set

# Serving (`loopml serve`), monitoring (`loopml monitor`) and the loop (`loopml loop`).
serving: {mode: dynamic}
monitoring: {window: 7d, sliding: 28d}
loop:
  triggers: {schedule: 30d}
"""


def commented(text: str) -> str:
    """``text`` commented out line by line (comments stay as they are)."""
    return "".join(
        line if line.startswith("#") or not line.strip() else "# " + line
        for line in text.splitlines(keepends=True)
    )


EXAMPLE_SPEC = (
    "# loopml project spec.\n"
    + SCHEMA_COMMENT
    + """\
#
# Start from your data instead: `loopml init --from FILE.csv` drafts every section from a sample
# file (types, identifiers, keys, features, model, monitoring, loop) and says what you still have
# to decide.
project: {name}

"""
    + STORAGE
    + """
# Sources of data, one kind of row each. `loopml ingest SOURCE FILE...` also creates a source
# that is not declared here, inferring everything from its first file.
sources: {{}}

# An example of every section, to uncomment and adapt (it replaces `sources: {{}}` above):
"""
    + commented(EXAMPLE_SECTIONS).replace("{", "{{").replace("}", "}}")
)


def example_spec(name: str) -> str:
    """The commented template for a project called ``name``."""
    return EXAMPLE_SPEC.format(name=name)
