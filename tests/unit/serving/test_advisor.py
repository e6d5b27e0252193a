"""The serving advisor: peakedness, Gini and coverage on request distributions with known
answers; the recommendation rule on crafted figures; and the whole measurement on a small
synthetic project (requests from a table, from the prediction log, and on the command line)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from loopml import Project
from loopml.cli import main
from loopml.serving import Runtime, static_table
from loopml.serving._advisor import (
    GROUP,
    Divergence,
    Rule,
    advise,
    divergence,
    gini,
    keys_covering,
    peakedness,
    read_log,
    recommend,
    top_keys,
)

# --------------------------------------------------------------------- the distribution's shape


def test_uniform_keys_are_flat() -> None:
    p = peakedness([3] * 100)
    assert p.requests == 300 and p.keys == 100 and p.unkeyed == 0
    assert p.top_share == {"1": 0.01, "10": 0.1, "100": 1.0, "1000": 1.0}
    assert p.gini == pytest.approx(0.0, abs=1e-12)
    assert p.keys_for == {"50%": 50, "90%": 90, "99%": 99}
    assert p.unique_share == pytest.approx(1 / 3)


def test_one_hot_key_is_peaked() -> None:
    counts = [901] + [1] * 99  # 1,000 requests: one key takes 90.1 %
    p = peakedness(counts)
    assert p.top_share["1"] == pytest.approx(0.901)
    assert p.top_share["10"] == pytest.approx(0.91)
    assert p.keys_for == {"50%": 1, "90%": 1, "99%": 90}  # 901 + 89 = 990
    # Gini = 2 sum(i x_i) / (n sum x) - (n + 1) / n with the counts ascending.
    ranks = np.arange(1, 101)
    expected = 2 * (ranks * np.sort(counts)).sum() / (100 * 1000) - 101 / 100
    assert p.gini == pytest.approx(expected) and p.gini > 0.85


def test_gini_known_values() -> None:
    assert gini([5, 5, 5, 5]) == 0.0
    assert gini([0, 0, 0, 12]) == pytest.approx(0.75)  # (n - 1) / n with one key of four
    assert gini([7]) == 0.0 and gini([]) == 0.0
    assert gini([1, 2, 3, 4]) == pytest.approx(0.25)


def test_requests_without_a_key_dilute_the_shares() -> None:
    p = peakedness([50, 30], requests=100)  # 20 requests had a null key part
    assert p.unkeyed == 20 and p.top_share["1"] == pytest.approx(0.5)
    assert p.keys_for == {"50%": 1, "90%": None, "99%": None}
    with pytest.raises(Exception, match="fewer than the keyed"):
        peakedness([5], requests=3)


def test_keys_covering() -> None:
    counts = np.array([40, 30, 20, 10])
    assert keys_covering(counts, 0.4, 100) == 1
    assert keys_covering(counts, 0.41, 100) == 2
    assert keys_covering(counts, 1.0, 100) == 4
    assert keys_covering(counts, 0.5, 200) == 4 and keys_covering(counts, 0.51, 200) is None
    assert keys_covering(np.array([], dtype=np.int64), 0.5, 0) is None


# ----------------------------------------------------------------------------------- the rule

FAST = {"static_median_us": 8.0, "dynamic_median_us": 50.0}


def test_rule_static_when_the_universe_fits_and_covers() -> None:
    r = recommend(coverage=1.0, universe_bytes=5e6, universe_seconds=3, head_needed=400, **FAST)
    assert r.mode == "static" and "fits" in r.reasons[-1] and "6.2x faster" in r.reasons[0]
    assert r.rule["max_bytes"] == 1e9


def test_rule_hybrid_when_peaked_but_too_large_or_incomplete() -> None:
    over = recommend(coverage=1.0, universe_bytes=5e10, universe_seconds=3, head_needed=200, **FAST)
    assert over.mode == "hybrid" and "over budget" in over.reasons[1]
    assert "200 keys cover 50%" in over.reasons[2]
    slow = recommend(
        coverage=1.0, universe_bytes=1e6, universe_seconds=7200, head_needed=200, **FAST
    )
    assert slow.mode == "hybrid"
    new_keys = recommend(
        coverage=0.85, universe_bytes=1e6, universe_seconds=1, head_needed=600, **FAST
    )
    assert new_keys.mode == "hybrid" and "under 99% coverage" in new_keys.reasons[1]


def test_rule_dynamic_when_flat_unbounded_or_no_faster() -> None:
    flat = recommend(
        coverage=0.95, universe_bytes=5e10, universe_seconds=1e5, head_needed=50_000, **FAST
    )
    assert flat.mode == "dynamic" and "flat" in flat.reasons[-1]
    unreachable = recommend(
        coverage=0.6, universe_bytes=5e10, universe_seconds=1, head_needed=None, **FAST
    )
    assert (
        unreachable.mode == "dynamic" and "more keys than the lake has" in unreachable.reasons[-1]
    )
    unbounded = recommend(
        coverage=0.02, universe_bytes=1e3, universe_seconds=1, head_needed=None, **FAST
    )
    assert unbounded.mode == "dynamic" and "unbounded" in unbounded.reasons[0]
    no_gain = recommend(
        coverage=1.0,
        universe_bytes=1e3,
        universe_seconds=1,
        head_needed=1,
        static_median_us=10.0,
        dynamic_median_us=12.0,
    )
    assert no_gain.mode == "dynamic" and "not clearly faster" in no_gain.reasons[0]


def near(relative: float) -> Divergence:
    """A measured difference of table answers from on-demand ones, ``relative`` to their spread."""
    return Divergence(
        compared=500,
        mean_abs=0.1 * relative,
        max_abs=0.3,
        spread=0.1,
        relative=relative,
        decisions_changed=0.05,
    )


def test_rule_weighs_how_far_table_answers_are_from_the_model() -> None:
    """A table whose answers are far from the model's is not recommended, however fast it is:
    the request's other inputs would be lost (an advisor that did not weigh it recommended
    static answers 0.17 away from live ones on average)."""
    fits = {"coverage": 1.0, "universe_bytes": 5e6, "universe_seconds": 3.0, **FAST}
    close = recommend(head_needed=400, static_divergence=near(0.1), **fits)
    assert close.mode == "static"
    assert "differ from on-demand ones by 0.0100 on average" in close.reasons[-1]
    assert "10% of how much on-demand answers vary" in close.reasons[-1]
    assert "5.0% of decisions change" in close.reasons[-1] and "within 25%" in close.reasons[-1]
    far = recommend(
        head_needed=400, static_divergence=near(1.7), hybrid_divergence=near(0.2), **fits
    )
    assert far.mode == "hybrid"
    assert "over 25%: a table would answer too differently" in far.reasons[2]
    assert "the head's precomputed answers" in far.reasons[-1]
    both = recommend(
        head_needed=400, static_divergence=near(1.7), hybrid_divergence=near(0.9), **fits
    )
    assert both.mode == "dynamic" and "over 25%" in both.reasons[-1]
    flat = recommend(head_needed=50_000, static_divergence=near(1.7), **fits)
    assert flat.mode == "dynamic" and "flat" in flat.reasons[-1]
    lenient = recommend(
        head_needed=400, static_divergence=near(1.7), rule=Rule(max_divergence=2.0), **fits
    )
    assert lenient.mode == "static"


def test_divergence_of_answers() -> None:
    d = divergence([0.2, 0.6, 0.5], [0.2, 0.9, 0.1], task="binary", threshold=0.4)
    assert d is not None and d.compared == 3
    assert d.mean_abs == pytest.approx((0 + 0.3 + 0.4) / 3, abs=1e-5)
    assert d.max_abs == pytest.approx(0.4)
    mean = (0.2 + 0.9 + 0.1) / 3
    spread = (abs(0.2 - mean) + abs(0.9 - mean) + abs(0.1 - mean)) / 3
    assert d.spread == pytest.approx(spread, abs=1e-5)
    assert d.relative == pytest.approx(d.mean_abs / d.spread, abs=1e-3)
    assert d.decisions_changed == pytest.approx(1 / 3, abs=1e-4)  # 0.5 against 0.1 only
    same = divergence([[0.2, 0.8], [0.5, 0.5]], [[0.2, 0.8], [0.5, 0.5]], task="multiclass")
    assert same is not None and same.mean_abs == 0 and same.relative == 0
    value = divergence([10.0, 12.0], [11.0, 15.0], task="regression")
    assert value is not None and value.decisions_changed is None and value.mean_abs == 2.0
    assert divergence([], [], task="binary") is None


def test_rule_thresholds_are_parameters() -> None:
    figures = {"coverage": 1.0, "universe_bytes": 5e6, "universe_seconds": 3.0, **FAST}
    assert recommend(head_needed=400, **figures).mode == "static"
    tight = Rule(max_bytes=1e6, max_head=300)
    assert recommend(head_needed=400, rule=tight, **figures).mode == "dynamic"
    assert recommend(head_needed=300, rule=tight, **figures).mode == "hybrid"


# ------------------------------------------------------------------- on a synthetic project

SPEC = """\
project: shop
sources:
  views:
    format: csv
    timestamp: at
features:
  event: {source: views}
  request: [item, price, at]
  derived:
    band: "price // 10"
  label: {name: bought, expr: "bought_flag == 1"}
model:
  name: shop
  task: binary
  params: {n_estimators: 20, num_leaves: 7, min_child_samples: 5}
  split: {method: time, test: 0.2, valid: 0.1}
gate: {backtest: null}
serving:
  static: {key: [item]}
  hybrid: {head: 5}
"""
ITEMS = [f"i{n:02d}" for n in range(30)]
START = datetime(2024, 1, 1, tzinfo=UTC)


def views(n: int = 900) -> pa.Table:
    rng = np.random.default_rng(1)
    price = rng.uniform(1, 100, n).round(2)
    return pa.table(
        {
            "at": pa.array([START + timedelta(minutes=10 * i) for i in range(n)]),
            "item": pa.array([ITEMS[i % len(ITEMS)] for i in range(n)]),
            "price": pa.array(price),
            "bought_flag": pa.array((rng.uniform(0, 100, n) > price).astype(np.int64)),
        }
    )


def requests() -> pa.Table:
    """1,000 requests: i00 400 times, i01-i20 25 times each, and 100 new items, once each."""
    items = ["i00"] * 400 + [i for i in ITEMS[1:21] for _ in range(25)]
    items += [f"new{n}" for n in range(100)]
    rng = np.random.default_rng(2)
    order = rng.permutation(len(items))
    return pa.table(
        {
            "item": pa.array([items[i] for i in order]),
            "price": pa.array(rng.uniform(1, 100, len(items)).round(2)),
            "at": pa.array([START + timedelta(days=7, seconds=i) for i in range(len(items))]),
        }
    )


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("shop")
    (root / "loopml.yaml").write_text(SPEC)
    pacsv.write_csv(views(), root / "views.csv")
    p = Project.open(root)
    (r,) = p.data.ingest("views", [root / "views.csv"])
    assert r.rows_accepted == 900, r.reasons
    version = p.models.train().version
    assert version is not None
    assert p.models.evaluate(version.version).passed
    p.models.promote(version.version, reason="test")
    yield p
    p.close()


def test_top_keys_come_from_the_lake_before_anything_is_logged(shop: Project) -> None:
    top = top_keys(shop, ["item"], 3)
    assert top == [{"item": "i00"}, {"item": "i01"}, {"item": "i02"}]  # 30 events each: by name
    assert top_keys(shop, ["band"], 1)[0].keys() == {"band"}  # a derived key
    with pytest.raises(Exception, match="request features"):
        top_keys(shop, ["bought_flag"], 3)


def test_advice_on_a_table_of_requests(shop: Project) -> None:
    table = requests()
    a = advise(shop, table, sample=300)
    assert a.key == ["item"] and a.requests == 1000 and a.model == "shop"
    p = a.peakedness
    assert p.keys == 121 and p.top_share["1"] == pytest.approx(0.4)
    assert p.top_share["10"] == pytest.approx(0.4 + 9 * 0.025)
    assert p.keys_for["50%"] == 5 and p.keys_for["90%"] == 21 and p.keys_for["99%"] == 111
    counts = list(Counter(table["item"].to_pylist()).values())
    assert p.gini == pytest.approx(gini(counts))
    assert a.universe.keys == 30 and a.universe.coverage == pytest.approx(0.9)
    assert "900 rows of views" in a.universe.counted

    # The head: 21 keys cover 90 %, at most serving.hybrid.head (5).
    assert a.hybrid.head == 5 and a.hybrid.head_share == pytest.approx(0.5)
    assert abs(a.hybrid.head_share_of_sample - 0.5) < 0.1  # a random sample of 300
    assert a.hybrid.hit_rate == a.hybrid.head_share_of_sample

    # Static: every known key precomputed; the new items (10 %) fall back.
    static = a.latency["static"]
    assert static.fallbacks == round((1 - a.static_coverage) * 300)
    assert abs(a.static_coverage - 0.9) < 0.06
    assert a.latency["dynamic"].static_share == 0 and a.latency["dynamic"].fallbacks == 0
    for m in a.latency.values():
        assert m.requests == 300 and 0 < m.median_us <= m.p99_us
    assert a.compute.median_us == a.latency["dynamic"].median_us
    assert a.compute.cpu_seconds_per_1000 > 0
    assert a.storage.keys_precomputed == 30 and a.storage.bytes_precomputed > 0
    assert a.storage.universe_bytes == a.storage.bytes_precomputed and not a.storage.extrapolated
    assert a.divergence is not None and 0 <= a.divergence < 1
    # The table answers per item; the model also reads the request's price, which the table
    # cannot: its answers are measured against the model's on the same requests.
    sv, hv = a.static_vs_dynamic, a.hybrid_vs_dynamic
    assert sv is not None and hv is not None
    assert sv.compared == round(a.static_coverage * 300) and sv.mean_abs == a.divergence
    assert hv.compared == round(a.hybrid.hit_rate * 300)
    assert sv.relative > Rule().max_divergence and sv.decisions_changed is not None

    # The recommendation follows the rule from the measured figures, the difference included.
    r = a.recommendation
    expected = recommend(
        coverage=0.9,
        universe_bytes=a.storage.universe_bytes,
        universe_seconds=a.storage.universe_seconds,
        head_needed=keys_covering(np.array([400] + [25] * 20), 0.5, 1000),
        static_median_us=static.median_us,
        dynamic_median_us=a.latency["dynamic"].median_us,
        static_divergence=sv,
        hybrid_divergence=hv,
        rule=Rule(max_head=5),
    )
    assert r.mode == expected.mode and r.reasons == expected.reasons
    assert r.mode == "dynamic" and "a table would answer too differently" in r.reasons[-1]
    json.dumps(a.to_dict())  # plain data

    # Nothing was written to the served table, and the advisor's own table is gone.
    # (i29 is in the lake, never requested: nothing else here precomputes it.)
    served = static_table("shop", a.version)
    assert shop.online.get_latest(served, ["i29"]) == [None]
    assert shop.online.get_latest(static_table("advisor.shop", a.version), ["i29"]) == [None]


def test_a_custom_key_and_head(shop: Project) -> None:
    a = advise(shop, requests(), key=["band"], sample=100, head=3)
    assert a.key == ["band"] and a.hybrid.head == 3 and a.hybrid.chosen_by == "given: 3"
    assert a.universe.keys == 10 and a.universe.coverage == 1.0  # price bands 0-9
    assert a.hybrid.hit_rate == a.hybrid.head_share_of_sample
    with pytest.raises(Exception, match="no column 'price'"):
        advise(shop, requests().drop_columns(["price"]))


def test_a_large_universe_is_sampled_and_extrapolated(
    shop: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import loopml.serving._advisor as advisor

    monkeypatch.setattr(advisor, "FULL_PRECOMPUTE", 10)
    monkeypatch.setattr(advisor, "UNIVERSE_SAMPLE", 4)
    table = requests().filter(pc.is_in(requests()["item"], pa.array(["i00", "i01"])))
    a = advise(shop, table, sample=1000, head=1)  # every request: both keys sampled
    s = a.storage
    assert s.extrapolated and s.keys_precomputed == 2 + 4  # the requested keys and 4 others
    assert s.universe_bytes == round(s.bytes_precomputed / s.keys_precomputed * 30)
    assert s.universe_seconds == pytest.approx(s.seconds / s.keys_precomputed * 30, rel=1e-3)
    assert a.static_coverage == 1.0 and a.hybrid.hit_rate == a.hybrid.head_share_of_sample


def test_advice_from_the_prediction_log(shop: Project) -> None:
    with pytest.raises(Exception, match=r"prediction log predictions\.shop is empty"):
        advise(shop)
    rt = Runtime(shop)
    rt.holder.check()
    served = rt.holder.current
    assert served is not None and rt.logger is not None
    rows = requests().slice(0, 600).to_pylist()
    for pred in rt.engine.answer(rt.engine.parse(rows), served):
        rt.record(pred, pred.latency_us / 1e6)
    assert rt.logger.flush() == 600
    a = advise(shop, sample=100)
    assert a.requests == 600 and "600 new entries read, 600 kept" in a.source
    assert shop.events.pending("predictions.shop", GROUP) == 0
    # A second run reads nothing new but still sees every request kept.
    again = advise(shop, sample=100)
    assert again.requests == 600 and "0 new entries read" in again.source
    assert again.peakedness == a.peakedness
    top = top_keys(shop, ["item"], 2)
    assert top[0] == {"item": "i00"}
    expected = Counter(r["item"] for r in rows).most_common(2)
    assert [t["item"] for t in top] == [k for k, _ in expected]
    # And so does Serving.precompute(head=...): it writes the head of the log.
    summary = shop.serving.precompute(head=2, window=None)
    assert summary["keys"] == 2


def test_entries_that_are_not_predictions_are_skipped_by_the_advisor(shop: Project) -> None:
    # Landing keeps them among its rejected payloads; the advisor reads past them.
    shop.events.append(
        "predictions.shop", [b"not json{", b"[1, 2]", b'{"no": "id"}', b'{"id": "x"}']
    )
    rt = Runtime(shop)
    rt.holder.check()
    served = rt.holder.current
    assert served is not None and rt.logger is not None
    for pred in rt.engine.answer(rt.engine.parse(requests().slice(0, 5).to_pylist()), served):
        rt.record(pred, pred.latency_us / 1e6)
    assert rt.logger.flush() == 5
    kept, new = read_log(shop)
    assert new == 5 and kept.num_rows >= 5
    assert shop.events.pending("predictions.shop", GROUP) == 0


def test_the_command(shop: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "requests.csv"
    pacsv.write_csv(requests(), path)
    code = main(
        [
            "advise-serving",
            "--requests",
            str(path),
            "--sample",
            "50",
            "-p",
            str(shop.root),
            "--json",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    advice = json.loads(out)
    assert advice["requests"] == 1000 and advice["recommendation"]["mode"] in (
        "static",
        "dynamic",
        "hybrid",
    )
    assert math.isclose(advice["universe"]["coverage"], 0.9)
    d = advice["static_vs_dynamic"]
    assert d["compared"] > 0 and d["relative"] > 0.25  # the table cannot read the price
    assert advice["recommendation"]["rule"]["max_divergence"] == 0.25
    code = main(["advise-serving", "--requests", str(path), "--key", "band", "--head", "2",
                 "--sample", "50", "--max-divergence", "100", "-p", str(shop.root)])  # fmt: skip
    shown = capsys.readouterr().out
    assert code == 0 and "recommendation:" in shown and "Gini" in shown and "hybrid" in shown
    assert "static answers against dynamic ones" in shown and "within 10000%" in shown
    code = main(["advise-serving", "--requests", str(tmp_path / "nope.txt"), "-p", str(shop.root)])
    assert code == 2 and "unknown format" in capsys.readouterr().err


def test_the_latest_advice_is_kept_for_the_dashboard(shop: Project, tmp_path: Path) -> None:
    from loopml.serving import load_advice, save_advice

    assert load_advice(tmp_path) is None  # nothing measured yet
    a = advise(shop, requests(), key=["band"], sample=100, head=3)
    at = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    path = save_advice(a, tmp_path, at=at)
    kept = load_advice(tmp_path)
    assert kept is not None and kept.measured_at == at
    assert kept.advice == a  # every figure, nested records included, read back as written
    path.write_text("{not json")
    assert load_advice(tmp_path) is None  # unreadable: measured again, never guessed at
