"""Team-draft interleaving: compare two rankers on the same users, one merged list at a time.

Each user sees one list merged from both rankers' lists, every item credited to the ranker (the
team) that placed it. A user whose clicks fall more on A's items is a win for A. Because every user
judges both rankers side by side, interleaving needs far fewer users than an A/B test of the same
pair (see the tests' simulation); a sign test on the wins tells which ranker users prefer.

>>> import numpy as np
>>> shown = team_draft(["a", "b", "c"], ["b", "d", "a"], rng=np.random.default_rng(1))
>>> sorted(shown.items)
['a', 'b', 'c', 'd']
>>> credit(shown, [shown.items[0]]) == (1 if shown.teams[0] == 0 else -1)
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from loopml.errors import UsageError

if TYPE_CHECKING:
    import pyarrow as pa

    from loopml.rollout._records import ExperimentConfig

TEAM_A, TEAM_B = 0, 1


@dataclass(frozen=True)
class Interleaved:
    """The merged list shown to a user, and which ranker contributed each position."""

    items: list[Any]
    teams: list[int]  # per position: 0 = ranker A, 1 = ranker B

    def to_dict(self) -> dict[str, Any]:
        return {"items": list(self.items), "teams": list(self.teams)}


def team_draft(
    a: Sequence[Any], b: Sequence[Any], *, k: int | None = None, rng: np.random.Generator
) -> Interleaved:
    """Team-draft interleaving (Radlinski, Kurup and Joachims, 2008) of rankings ``a`` and ``b``.

    Each round the team with fewer picks picks (a coin flip when they have as many); it adds its
    highest-ranked item not yet in the list. A team whose list is used up passes, and the other
    keeps picking. Stops at ``k`` items (default: every distinct item of both lists).
    """
    if k is not None and k < 0:
        raise UsageError(f"k must be >= 0 or None; got {k!r}")
    lists = (a, b)
    limit = len(set(a) | set(b)) if k is None else k
    items: list[Any] = []
    teams: list[int] = []
    seen: set[Any] = set()
    cursor = [0, 0]
    picks = [0, 0]
    exhausted = [False, False]
    while len(items) < limit and not all(exhausted):
        if exhausted[TEAM_A] or exhausted[TEAM_B]:
            team = TEAM_B if exhausted[TEAM_A] else TEAM_A
        elif picks[TEAM_A] != picks[TEAM_B]:
            team = TEAM_A if picks[TEAM_A] < picks[TEAM_B] else TEAM_B
        else:
            team = TEAM_A if rng.random() < 0.5 else TEAM_B
        ranking = lists[team]
        while cursor[team] < len(ranking) and ranking[cursor[team]] in seen:
            cursor[team] += 1
        if cursor[team] == len(ranking):
            exhausted[team] = True
            continue
        item = ranking[cursor[team]]
        seen.add(item)
        items.append(item)
        teams.append(team)
        picks[team] += 1
    return Interleaved(items=items, teams=teams)


def credit(shown: Interleaved, clicked: Iterable[Any]) -> int:
    """+1 if A's items got more clicks, -1 if B's did, 0 for a tie (no clicks included). Each
    shown item counts once however often it was clicked; clicks on items not shown are ignored."""
    team_of = dict(zip(shown.items, shown.teams, strict=True))
    clicks = [0, 0]
    for item in set(clicked):
        team = team_of.get(item)
        if team is not None:
            clicks[team] += 1
    return int(np.sign(clicks[TEAM_A] - clicks[TEAM_B]))


@dataclass(frozen=True)
class Preference:
    """Which ranker users prefer: the wins, the sign test's p-value, and the effect size."""

    wins_a: int
    wins_b: int
    ties: int
    p_value: float
    preferred: str | None  # "a", "b", or None when the test is not significant
    delta: float  # (wins_a - wins_b) / all comparisons: the usual interleaving effect

    def to_dict(self) -> dict[str, Any]:
        return {
            "wins_a": self.wins_a,
            "wins_b": self.wins_b,
            "ties": self.ties,
            "p_value": self.p_value,
            "preferred": self.preferred,
            "delta": self.delta,
        }


def preference(wins_a: int, wins_b: int, ties: int = 0, *, alpha: float = 0.05) -> Preference:
    """Two-sided sign test of ``wins_a`` against ``wins_b`` (ties left out).

    >>> preference(15, 5).preferred, round(preference(15, 5).p_value, 4)
    ('a', 0.0414)
    """
    for option, value in (("wins_a", wins_a), ("wins_b", wins_b), ("ties", ties)):
        if not isinstance(value, int | np.integer) or value < 0:
            raise UsageError(
                f"{option} must be a count (an integer >= 0); got {value!r}",
                details={"argument": option},
            )
    if not 0.0 < alpha < 1.0:
        raise UsageError(f"alpha must be in (0, 1); got {alpha!r}", details={"argument": "alpha"})
    decided = wins_a + wins_b
    p_value = float(stats.binomtest(wins_a, decided, 0.5).pvalue) if decided else 1.0
    preferred = None
    if p_value < alpha and wins_a != wins_b:
        preferred = "a" if wins_a > wins_b else "b"
    total = decided + ties
    return Preference(
        wins_a=int(wins_a),
        wins_b=int(wins_b),
        ties=int(ties),
        p_value=p_value,
        preferred=preferred,
        delta=(wins_a - wins_b) / total if total else 0.0,
    )


def evaluate_interleave(
    arms: Sequence[int], config: ExperimentConfig, table: pa.Table
) -> dict[str, Any]:
    """An interleaving experiment's look: each ranking shown (the answers of one ``of``) is
    credited to the ranker (``arms``: a, b) whose items got more clicks (labels above 0 known by
    now, column ``known``); the sign test on the wins says which ranker users prefer."""
    a, b = arms
    wins_a = wins_b = ties = 0
    if table.num_rows:
        ids = table["of"].to_pylist()
        teams = table["version"].to_pylist()
        labels = table["label"].to_pylist()
        known = table["known"].to_pylist()
        clicks: dict[str, list[int]] = {}
        for rank_id, team, label, ok in zip(ids, teams, labels, known, strict=True):
            slot = clicks.setdefault(rank_id or "", [0, 0])
            if ok and label is not None and float(label) > 0:
                slot[0 if team == a else 1] += 1
        for ca, cb in clicks.values():
            if ca > cb:
                wins_a += 1
            elif cb > ca:
                wins_b += 1
            else:
                ties += 1
    pref = preference(wins_a, wins_b, ties, alpha=config.alpha)
    winner = {"a": a, "b": b}.get(pref.preferred or "")
    return {
        **pref.to_dict(),
        "metric": "clicks",
        "rankings": wins_a + wins_b + ties,
        "decision": "winner" if winner is not None else "continue",
        "winner": winner,
        "reasons": [
            f"version {a} won {wins_a} rankings, version {b} won {wins_b}, {ties} tied; "
            f"sign test p = {pref.p_value:.3g}"
        ],
    }
