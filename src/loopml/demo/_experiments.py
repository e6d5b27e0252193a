"""Demo part 9: experiments in production.

- A bandit (Thompson sampling) over three flights model versions, replayed day by day through
  the batch server as live traffic: each day's flights are routed by the arms' current
  probabilities, their on-time labels arrive with the flights, the rewards (a correct on-time
  prediction) are recomputed from the feedback log and every next day is routed by them.
- Interleaving on MovieLens (``ml-latest-small``, when the folder is there): a popularity ranker
  against a model trained on earlier ratings, a simulated user clicking what they rated highly
  later; how many sessions interleaving needs to tell the rankers apart against an A/B test of
  the same pair.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console

from loopml._project import Project

BANDIT_START = datetime(2013, 4, 1, tzinfo=UTC)
BANDIT_DAYS = 28
SESSIONS = (100, 150, 200, 300, 400, 600, 800, 1200, 1600, 3200)


def find_datasets() -> Path | None:
    """The shared real data sets: ``$LOOPML_DATASETS``, else ``../shared/datasets`` beside the
    working directory (where ``make demo`` runs)."""
    for base in (os.environ.get("LOOPML_DATASETS"), Path.cwd().parent / "shared" / "datasets"):
        if base and (Path(base) / "ml-latest-small" / "ratings.csv").exists():
            return Path(base)
    return None


def run_experiments(console: Console, project: Project) -> dict[str, Any]:
    console.print()
    console.rule("9. experiments in production")
    bandit = run_bandit(console, project)
    datasets = find_datasets()
    if datasets is None:
        console.print(
            "interleaving on MovieLens skipped: no ml-latest-small folder under "
            "$LOOPML_DATASETS or ../shared/datasets"
        )
        interleaving: dict[str, Any] | None = None
    else:
        interleaving = run_interleaving(console, datasets)
    return {"bandit": bandit, "interleaving": interleaving}


# ------------------------------------------------------------------------------------- bandit


def run_bandit(console: Console, project: Project) -> dict[str, Any]:
    from loopml.rollout import BatchServer

    models = project.models
    champion = models.get("champion").version
    # Two more versions to choose from: one that saw only January, one that saw up to March.
    narrow = models.train(
        as_of=datetime(2013, 2, 1, tzinfo=UTC),
        window=timedelta(days=31),
        by="demo",
        note="bandit arm: January only",
    ).version
    recent = models.train(
        as_of=BANDIT_START,
        window=timedelta(days=90),
        by="demo",
        note="bandit arm: January to March",
    ).version
    assert narrow is not None and recent is not None
    arms = [champion, narrow.version, recent.version]
    ex = project.experiments
    rollout = ex.start("bandit", arms, policy="thompson", at=BANDIT_START, by="demo")
    console.print(
        f"bandit {rollout.id} (Thompson sampling) over versions {arms[0]} (champion, Jan-Feb), "
        f"{arms[1]} (January only) and {arms[2]} (January-March); reward: a correct on-time "
        f"prediction; {BANDIT_DAYS} days from {BANDIT_START:%b %d}, routed day by day"
    )
    server = BatchServer(
        rollouts=project.rollouts, models=project.models, monitoring=project.monitoring, seed=7
    )
    flights = project.features.build(
        as_of=BANDIT_START + timedelta(days=BANDIT_DAYS + 2), labelled_only=False
    ).table
    times = pc.cast(flights["_event_time"], pa.int64())
    shares: list[dict[int, float]] = []
    answered: dict[int, int] = dict.fromkeys(arms, 0)
    for day in range(BANDIT_DAYS):
        lo = BANDIT_START + timedelta(days=day)
        hi = lo + timedelta(days=1)
        keep = pc.and_(
            pc.greater_equal(times, _us(lo)),
            pc.less(times, _us(hi)),
        )
        batch = flights.filter(keep)
        out = server.serve(batch, id_prefix=f"bandit-{lo:%Y%m%d}")
        for v, n in out["answered"].items():
            answered[v] += n
        shares.append({v: float(p) for v, p in out["probabilities"].items()})
        ex.evaluate(rollout, until=hi)  # the day's labels known by its end credit the arms
    result = ex.evaluate(rollout, until=BANDIT_START + timedelta(days=BANDIT_DAYS + 1))
    # Each arm's accuracy on all of those flights, had it answered every one (hindsight).
    truth = _truth(project, flights, times)
    hindsight = {v: _accuracy(project, v, truth) for v in arms}
    best = max(hindsight, key=lambda v: hindsight[v])
    total = sum(answered.values())
    got = sum(
        (a["mean_reward"] or 0.0) * a["rewards"]
        for a in result["arms_detail"]
        if a["mean_reward"] is not None
    )
    rewarded = sum(a["rewards"] for a in result["arms_detail"])
    console.print("  week   " + "  ".join(f"v{v:<6}" for v in arms))
    for week in range(0, BANDIT_DAYS, 7):
        s = shares[week]
        console.print(
            f"  {(BANDIT_START + timedelta(days=week)):%b %d}  "
            + "  ".join(f"{s.get(v, 0.0):6.1%}" for v in arms)
        )
    for a in result["arms_detail"]:
        v = a["version"]
        console.print(
            f"  version {v}: answered {answered[v]:,} flights, mean reward "
            f"{_pct(a['mean_reward'])}, accuracy in hindsight {hindsight[v]:.1%}, "
            f"off-policy estimate {_pct(a['off_policy_value'])}, P(best) "
            f"{a['probability_best']:.1%}"
        )
    accuracy = got / rewarded if rewarded else 0.0
    console.print(
        f"  the bandit's accuracy {accuracy:.1%} against {hindsight[best]:.1%} for the best arm "
        f"in hindsight (version {best}) and {np.mean(list(hindsight.values())):.1%} for a uniform "
        f"split; decision: {result['decision']}"
        + (f" (version {result['winner']})" if result.get("winner") is not None else "")
    )
    ended = ex.end(rollout, promote=None, by="demo", reason="demo: the bandit ends with the replay")
    return {
        "rollout": rollout.id,
        "arms": arms,
        "answered": {str(v): n for v, n in answered.items()},
        "total": total,
        "accuracy": round(accuracy, 4),
        "hindsight": {str(v): round(a, 4) for v, a in hindsight.items()},
        "best": best,
        "shares_last_day": {str(v): round(p, 4) for v, p in shares[-1].items()},
        "decision": result["decision"],
        "winner": result.get("winner"),
        "status": ended["rollout"]["status"],
    }


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _truth(project: Project, flights: pa.Table, times: Any) -> pa.Table:
    label = project.monitoring.label_name()
    keep = pc.and_(
        pc.and_(
            pc.greater_equal(times, _us(BANDIT_START)),
            pc.less(times, _us(BANDIT_START + timedelta(days=BANDIT_DAYS))),
        ),
        pc.is_valid(flights[label]),
    )
    return flights.filter(keep)


def _accuracy(project: Project, version: int, table: pa.Table) -> float:
    """The version's accuracy on ``table`` at its own threshold, as the bandit's reward."""
    from loopml.rollout import metric_values

    model = project.models.load(version)
    label = project.monitoring.label_name()
    y = pc.cast(table[label], pa.float64()).to_numpy(zero_copy_only=False) > 0.5
    correct = metric_values(
        "accuracy", model.predict(table), y, task="binary", threshold=model.threshold
    )
    return float(correct.mean())


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


# --------------------------------------------------------------------------------- MovieLens


def run_interleaving(console: Console, datasets: Path) -> dict[str, Any]:
    """Two rankers on MovieLens, compared by interleaving and by an A/B test."""
    study = MovieLensStudy.load(datasets)
    rng = np.random.default_rng(13)
    console.print(
        f"interleaving on MovieLens: {study.users:,} users with later ratings; ranker A = "
        "popularity (movies liked most in the earlier ratings), ranker B = a factorization "
        "(truncated SVD) of the earlier ratings; top 10 shown; a simulated user examines "
        "position i with probability 1/log2(i+2) and clicks what they rated >= 4 later"
    )
    console.print(
        f"  precision@10 on the later ratings: A {study.precision[0]:.3f}, "
        f"B {study.precision[1]:.3f}"
    )
    one = study.sessions(2000, rng)
    from loopml.rollout import preference

    pref = preference(one["wins_a"], one["wins_b"], one["ties"])
    console.print(
        f"  2,000 interleaved sessions: B won {one['wins_b']:,}, A won {one['wins_a']:,}, "
        f"{one['ties']:,} tied (no click, or as many for each); sign test p = "
        f"{pref.p_value:.2g}: users prefer ranker {(pref.preferred or '-').upper()}"
    )
    power = study.power(rng, repeats=200)
    need = {m: next((n for n, p in power[m].items() if p >= 0.8), None) for m in power}
    console.print("  sessions   interleaving power   A/B test power")
    for n in SESSIONS:
        console.print(f"  {n:>8,}   {power['interleaving'][n]:>18.0%}   {power['ab'][n]:>14.0%}")
    console.print(
        f"  80% power: interleaving with {_n(need['interleaving'])} sessions, the A/B test "
        f"with {_n(need['ab'])}"
    )
    return {
        "users": study.users,
        "precision_at_10": [round(p, 4) for p in study.precision],
        "sessions_2000": {**one, "p_value": pref.p_value, "preferred": pref.preferred},
        "power": {m: {str(n): p for n, p in v.items()} for m, v in power.items()},
        "sessions_for_80": need,
    }


def _n(n: int | None) -> str:
    return f"{n:,}" if n is not None else f"more than {SESSIONS[-1]:,}"


EXAMINE = 1.0 / np.log2(np.arange(10) + 2.0)


class MovieLensStudy:
    """Per user: the two rankers' top 10 (unseen movies), interleaved lists (several coin-flip
    draws), and which shown movies the user liked later."""

    def __init__(
        self,
        relevant_a: np.ndarray,
        relevant_b: np.ndarray,
        interleaved: np.ndarray,
        teams: np.ndarray,
        precision: tuple[float, float],
    ) -> None:
        self.relevant_a = relevant_a  # users x 10: liked later (0/1) at each of A's positions
        self.relevant_b = relevant_b
        self.interleaved = interleaved  # users x draws x 10: liked later, interleaved list
        self.teams = teams  # users x draws x 10: 0 = A placed it, 1 = B
        self.precision = precision
        self.users = relevant_a.shape[0]

    @classmethod
    def load(cls, datasets: Path, *, draws: int = 8) -> MovieLensStudy:
        from scipy.sparse import csr_matrix
        from sklearn.decomposition import TruncatedSVD

        from loopml.demo._movielens import read_ratings
        from loopml.rollout import team_draft

        t = read_ratings(datasets)
        user = t["userId"].to_numpy()
        movie = t["movieId"].to_numpy()
        rating = t["rating"].to_numpy()
        # Each user's first 70% of ratings (in time) are "earlier", the rest "later".
        order = np.lexsort((np.arange(len(user)), user))
        user, movie, rating = user[order], movie[order], rating[order]
        _, start, count = np.unique(user, return_index=True, return_counts=True)
        rank = np.arange(len(user)) - np.repeat(start, count)
        earlier = rank < np.repeat(np.floor(count * 0.7), count)
        movies, m_idx = np.unique(movie, return_inverse=True)
        users, u_idx = np.unique(user, return_inverse=True)
        liked = rating >= 4.0
        e = earlier
        matrix = csr_matrix(
            (rating[e] - 3.0, (u_idx[e], m_idx[e])), shape=(len(users), len(movies))
        )
        popularity = np.bincount(m_idx[e & liked], minlength=len(movies)).astype(float)
        svd = TruncatedSVD(n_components=32, random_state=0)
        factors = svd.fit_transform(matrix)
        rng = np.random.default_rng(0)
        rel_a, rel_b, inter, teams = [], [], [], []
        hits = [0, 0]
        seen_rows = matrix.tolil().rows
        for u in range(len(users)):
            later = set(m_idx[(u_idx == u) & ~e & liked].tolist())
            if not later:
                continue
            seen = set(seen_rows[u])
            scores_b = factors[u] @ svd.components_
            top_a = _top(popularity, seen)
            top_b = _top(scores_b, seen)
            ra = np.array([m in later for m in top_a], dtype=float)
            rb = np.array([m in later for m in top_b], dtype=float)
            hits[0] += int(ra.sum())
            hits[1] += int(rb.sum())
            rel_a.append(ra)
            rel_b.append(rb)
            mine_i, mine_t = [], []
            for _ in range(draws):
                shown = team_draft(top_a, top_b, k=10, rng=rng)
                mine_i.append([m in later for m in shown.items])
                mine_t.append(shown.teams)
            inter.append(np.array(mine_i, dtype=float))
            teams.append(np.array(mine_t, dtype=int))
        n = len(rel_a)
        return cls(
            np.array(rel_a),
            np.array(rel_b),
            np.array(inter),
            np.array(teams),
            (hits[0] / (10 * n), hits[1] / (10 * n)),
        )

    def _interleaved_outcomes(self, shape: tuple[int, ...], rng: np.random.Generator) -> Any:
        users = rng.integers(0, self.users, size=shape)
        draw = rng.integers(0, self.interleaved.shape[1], size=shape)
        rel = self.interleaved[users, draw]
        team = self.teams[users, draw]
        clicks = rel * (rng.random(rel.shape) < EXAMINE)
        a = (clicks * (team == 0)).sum(-1)
        b = (clicks * (team == 1)).sum(-1)
        return a, b

    def sessions(self, n: int, rng: np.random.Generator) -> dict[str, int]:
        a, b = self._interleaved_outcomes((n,), rng)
        return {
            "wins_a": int((a > b).sum()),
            "wins_b": int((b > a).sum()),
            "ties": int((a == b).sum()),
        }

    def power(self, rng: np.random.Generator, *, repeats: int) -> dict[str, dict[int, float]]:
        """How often each method finds the better ranker (p < 0.05, right direction) with
        ``n`` sessions: interleaving's sign test against an A/B test (half the sessions see
        A's list, half B's; Welch's test on clicks per session)."""
        from scipy import stats

        out: dict[str, dict[int, float]] = {"interleaving": {}, "ab": {}}
        better = 1 if self.precision[1] >= self.precision[0] else 0
        for n in SESSIONS:
            a, b = self._interleaved_outcomes((repeats, n), rng)
            wa, wb = (a > b).sum(1), (b > a).sum(1)
            k = np.minimum(wa, wb)
            p = np.minimum(1.0, 2 * stats.binom.cdf(k, wa + wb, 0.5))
            right = (wb > wa) if better == 1 else (wa > wb)
            out["interleaving"][n] = float(((p < 0.05) & right).mean())
            half = n // 2
            users_a = rng.integers(0, self.users, size=(repeats, half))
            users_b = rng.integers(0, self.users, size=(repeats, half))
            ca = (self.relevant_a[users_a] * (rng.random((repeats, half, 10)) < EXAMINE)).sum(-1)
            cb = (self.relevant_b[users_b] * (rng.random((repeats, half, 10)) < EXAMINE)).sum(-1)
            t, p_ab = stats.ttest_ind(cb, ca, axis=1, equal_var=False)
            right_ab = (t > 0) if better == 1 else (t < 0)
            out["ab"][n] = float(((p_ab < 0.05) & right_ab).mean())
        return out


def _top(scores: np.ndarray, seen: set[int], k: int = 10) -> list[int]:
    s = scores.astype(float).copy()
    if seen:
        s[list(seen)] = -np.inf
    top = np.argpartition(-s, k)[:k]
    return [int(i) for i in top[np.argsort(-s[top], kind="stable")]]
