"""The contract every online-store backend passes.

Subclass it in a test module and provide a ``store`` fixture returning a fresh, empty store
(closed by the fixture afterwards)::

    class TestMyBackend(OnlineStoreContract):
        @pytest.fixture
        def store(self): ...
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from typing import Any

from loopml.errors import UsageError
from loopml.storage import Fetch, OnlineStore, TileWrite

_PAIR = struct.Struct(">qq")


def add(old: bytes | None, new: bytes) -> bytes:
    """An additive merge (counts, sums): values are decimal integers."""
    return str(int(old or b"0") + int(new)).encode()


def min_max(old: bytes | None, new: bytes) -> bytes:
    """A min/max merge: values are two big-endian int64, (min, max)."""
    lo, hi = _PAIR.unpack(new)
    if old is not None:
        old_lo, old_hi = _PAIR.unpack(old)
        lo, hi = min(lo, old_lo), max(hi, old_hi)
    return _PAIR.pack(lo, hi)


def concat(old: bytes | None, new: bytes) -> bytes:
    """An order-sensitive merge, to see the order in which writes were folded."""
    return (old or b"") + new


def _raises(exc: type[BaseException], fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except exc as caught:
        return caught
    raise AssertionError(f"expected {exc.__name__}")


class OnlineStoreContract:
    """Behaviour every online store must show."""

    # -- latest -------------------------------------------------------------------------------

    def test_newest_ts_wins(self, store: OnlineStore) -> None:
        assert store.put_latest("t", [("k", 2.0, b"two")]) == 1
        assert store.put_latest("t", [("k", 1.0, b"older")]) == 0  # out of order: kept
        assert store.get_latest("t", ["k"]) == [(2.0, b"two")]
        assert store.put_latest("t", [("k", 2.0, b"tie")]) == 1  # equal ts: the later write
        assert store.get_latest("t", ["k"]) == [(2.0, b"tie")]
        assert store.put_latest("t", [("k", 3.5, b"newer")]) == 1
        assert store.get_latest("t", ["k"]) == [(3.5, b"newer")]

    def test_newest_ts_wins_within_one_batch(self, store: OnlineStore) -> None:
        rows = [("a", 5.0, b"a5"), ("a", 3.0, b"a3"), ("b", 1.0, b"b1"), ("b", 1.0, b"b1bis")]
        assert store.put_latest("t", rows) == 3  # a3 lost to a5; the tie b1bis replaced b1
        assert store.get_latest("t", ["a", "b"]) == [(5.0, b"a5"), (1.0, b"b1bis")]

    def test_ts_keeps_full_precision(self, store: OnlineStore) -> None:
        ts = 1_700_000_000.123456
        store.put_latest("t", [("k", ts, b"v"), ("neg", -12.5, b"n"), ("int", 7, b"i")])
        assert store.put_latest("t", [("k", ts - 1e-6, b"older")]) == 0
        assert store.get_latest("t", ["k", "neg", "int"]) == [
            (ts, b"v"),
            (-12.5, b"n"),
            (7.0, b"i"),
        ]

    def test_nan_ts_is_refused(self, store: OnlineStore) -> None:
        _raises(UsageError, lambda: store.put_latest("t", [("k", float("nan"), b"v")]))
        assert store.get_latest("t", ["k"]) == [None]

    def test_missing_keys_are_none(self, store: OnlineStore) -> None:
        store.put_latest("t", [("here", 1.0, b"v")])
        assert store.get_latest("t", ["nope", "here", "also-nope"]) == [None, (1.0, b"v"), None]
        assert store.get_latest("never-written", ["here"]) == [None]
        assert store.get_latest("t", []) == []
        assert store.put_latest("t", []) == 0

    def test_empty_value_is_not_missing(self, store: OnlineStore) -> None:
        store.put_latest("t", [("k", 1.0, b"")])
        store.merge_tiles("t", [TileWrite("k", 0, b"")], concat)
        assert store.get_latest("t", ["k"]) == [(1.0, b"")]
        assert store.get_tiles("t", "k", [0]) == [b""]

    def test_tables_are_isolated(self, store: OnlineStore) -> None:
        store.put_latest("users", [("1", 1.0, b"user")])
        store.put_latest("items", [("1", 2.0, b"item")])
        store.merge_tiles("users", [TileWrite("1", 0, b"1")], add)
        store.merge_tiles("items", [TileWrite("1", 0, b"5")], add)
        assert store.get_latest("users", ["1"]) == [(1.0, b"user")]
        assert store.get_latest("items", ["1"]) == [(2.0, b"item")]
        assert store.get_tiles("users", "1", [0]) == [b"1"]
        assert store.get_tiles("items", "1", [0]) == [b"5"]

    def test_keys_with_separators_and_unicode_never_collide(self, store: OnlineStore) -> None:
        # (table, key) pairs that a naive "table:key" layout would merge, plus glob and
        # escape characters and non-ASCII text.
        pairs = [
            ("a", "b:c"),
            ("a:b", "c"),
            ("a", "b"),
            ("a", "b:"),
            ("a:", "b"),
            ("a", "%3A"),
            ("a", ":"),
            ("a", "*"),
            ("a", "[x]?\\"),
            ("a", ""),
            ("", "a"),
            ("é", "日本:語 🙂"),
            ("a", "line\nbreak\x00nul"),
        ]
        for i, (table, key) in enumerate(pairs):
            store.put_latest(table, [(key, float(i), f"v{i}".encode())])
            store.merge_tiles(table, [TileWrite(key, 60, str(i).encode())], add)
        for i, (table, key) in enumerate(pairs):
            assert store.get_latest(table, [key]) == [(float(i), f"v{i}".encode())], (table, key)
            assert store.get_tiles(table, key, [60]) == [str(i).encode()], (table, key)
        store.drop_table("a")  # must not touch "a:", "a:b" or "" although their names overlap
        assert store.get_latest("a", ["b:c", "*"]) == [None, None]
        assert store.get_tiles("a", "b:c", [60]) == [None]
        assert store.get_latest("a:b", ["c"]) == [(1.0, b"v1")]
        assert store.get_tiles("a:b", "c", [60]) == [b"1"]
        assert store.get_tiles("a:", "b", [60]) == [b"4"]
        assert store.get_tiles("", "a", [60]) == [b"10"]
        assert store.get_tiles("é", "日本:語 🙂", [60]) == [b"11"]

    # -- tiles --------------------------------------------------------------------------------

    def test_additive_merge(self, store: OnlineStore) -> None:
        store.merge_tiles("t", [TileWrite("k", 0, b"1"), TileWrite("k", 60, b"2")], add)
        store.merge_tiles("t", [TileWrite("k", 0, b"10"), TileWrite("j", 0, b"7")], add)
        assert store.get_tiles("t", "k", [0, 60]) == [b"11", b"2"]
        assert store.get_tiles("t", "j", [0]) == [b"7"]

    def test_min_max_merge(self, store: OnlineStore) -> None:
        for value in (5, -3, 12, 0):
            store.merge_tiles("t", [TileWrite("k", 120, _PAIR.pack(value, value))], min_max)
        assert store.get_tiles("t", "k", [120]) == [_PAIR.pack(-3, 12)]

    def test_repeated_tile_in_one_call_merges_in_order(self, store: OnlineStore) -> None:
        store.merge_tiles("t", [TileWrite("k", 0, b"a")], concat)
        store.merge_tiles(
            "t",
            [
                TileWrite("k", 0, b"b"),
                TileWrite("k", 60, b"x"),
                TileWrite("k", 0, b"c"),
                TileWrite("k", 60, b"y"),
                TileWrite("k", 0, b"d"),
            ],
            concat,
        )
        assert store.get_tiles("t", "k", [0, 60]) == [b"abcd", b"xy"]

    def test_watermark_moves_with_the_tiles(self, store: OnlineStore) -> None:
        assert store.get_mark("consumer") is None
        store.merge_tiles("t", [TileWrite("k", 0, b"1")], add, mark=("consumer", "10-0"))
        assert store.get_mark("consumer") == "10-0"
        store.merge_tiles("t", [], add, mark=("consumer", "11-0"))  # no tiles: the mark alone
        assert store.get_mark("consumer") == "11-0"
        assert store.get_mark("other") is None

    def test_failed_merge_changes_neither_tiles_nor_mark(self, store: OnlineStore) -> None:
        store.merge_tiles("t", [TileWrite("k", 0, b"1")], add, mark=("consumer", "1"))

        class Boom(Exception):
            pass

        def explode_on_60(old: bytes | None, new: bytes) -> bytes:
            if new == b"boom":
                raise Boom
            return add(old, new)

        tiles = [TileWrite("k", 0, b"5"), TileWrite("j", 0, b"5"), TileWrite("k", 60, b"boom")]
        _raises(Boom, lambda: store.merge_tiles("t", tiles, explode_on_60, mark=("consumer", "2")))
        assert store.get_tiles("t", "k", [0, 60]) == [b"1", None]
        assert store.get_tiles("t", "j", [0]) == [None]
        assert store.get_mark("consumer") == "1"

    def test_tiles_that_do_not_exist_are_none(self, store: OnlineStore) -> None:
        store.merge_tiles("t", [TileWrite("k", 60, b"1"), TileWrite("k", 180, b"3")], add)
        starts = [0, 60, 120, 180, 240]
        assert store.get_tiles("t", "k", starts) == [None, b"1", None, b"3", None]
        assert store.get_tiles("t", "k", [180, 60, 60]) == [b"3", b"1", b"1"]  # order kept
        assert store.get_tiles("t", "other", starts) == [None] * 5
        assert store.get_tiles("t", "k", []) == []

    def test_negative_and_large_starts(self, store: OnlineStore) -> None:
        starts = [-3600, 0, 1_700_000_000, 2**62]
        store.merge_tiles("t", [TileWrite("k", s, str(s).encode()) for s in starts], add)
        assert store.get_tiles("t", "k", starts) == [str(s).encode() for s in starts]

    # -- fetch --------------------------------------------------------------------------------

    def test_fetch_equals_the_separate_calls(self, store: OnlineStore) -> None:
        store.put_latest("users", [("u1", 1.0, b"a"), ("u2", 2.0, b"b")])
        store.put_latest("items", [("u1", 3.0, b"c")])
        store.merge_tiles(
            "clicks", [TileWrite("u1", s, str(s).encode()) for s in range(0, 600, 60)], add
        )
        store.merge_tiles("views", [TileWrite("u1", 0, b"9")], add)
        request = Fetch(
            latest=[("users", "u1"), ("items", "u1"), ("users", "nope"), ("nope", "u2")],
            tiles=[
                ("clicks", "u1", list(range(300, 900, 60))),
                ("views", "u1", [0, 60]),
                ("clicks", "nope", [0]),
                ("clicks", "u1", []),
            ],
        )
        latest, tiles = store.fetch(request)
        assert latest == [store.get_latest(t, [k])[0] for t, k in request.latest]
        assert tiles == [store.get_tiles(t, k, s) for t, k, s in request.tiles]
        assert latest[0] == (1.0, b"a") and latest[2] is None
        assert tiles[0][:2] == [b"300", b"360"] and tiles[0][-1] is None
        assert store.fetch(Fetch()) == ([], [])
        assert store.fetch(Fetch(tiles=[("clicks", "u1", [])])) == ([], [[]])

    # -- generations --------------------------------------------------------------------------

    def test_generations_move_with_every_change_of_a_table(self, store: OnlineStore) -> None:
        assert store.generations(["t", "u"]) == [0, 0]
        assert store.generations([]) == []
        store.put_latest("t", [("k", 2.0, b"a")])
        g1 = store.generations(["t", "u"])
        assert g1[0] > 0 and g1[1] == 0
        store.put_latest("t", [("k", 1.0, b"older")])  # nothing changed: no move
        assert store.generations(["t"]) == g1[:1]
        store.merge_tiles("t", [TileWrite("k", 0, b"1")], add)
        g2 = store.generations(["t"])[0]
        assert g2 > g1[0]
        store.merge_tiles("t", [], add, mark=("m", "x"))  # a mark alone changes no value
        assert store.generations(["t"]) == [g2]
        store.put_latest("u", [("k", 1.0, b"b")])
        assert store.generations(["t"]) == [g2]  # per table
        store.drop_table("t")
        g3 = store.generations(["t"])[0]
        assert g3 > g2  # a drop moves it on, never back to a value readers have seen
        store.put_latest("t", [("k", 0.5, b"again")])
        assert store.generations(["t"])[0] > g3

    def test_is_empty(self, store: OnlineStore) -> None:
        assert store.is_empty("t") and store.is_empty("u")
        store.put_latest("t", [("k", 1.0, b"v")])
        store.merge_tiles("u", [TileWrite("k", 0, b"1")], add)
        assert not store.is_empty("t") and not store.is_empty("u")
        store.merge_tiles("w", [], add, mark=("m", "x"))
        assert store.is_empty("w")  # a mark is not a value
        store.drop_table("t")
        store.drop_table("u")
        assert store.is_empty("t") and store.is_empty("u")

    # -- housekeeping -------------------------------------------------------------------------

    def test_drop_table(self, store: OnlineStore) -> None:
        store.put_latest("t", [(f"k{i}", 1.0, b"v") for i in range(50)])
        store.merge_tiles(
            "t", [TileWrite(f"k{i}", 0, b"1") for i in range(50)], add, mark=("m", "x")
        )
        store.put_latest("kept", [("k0", 1.0, b"v")])
        store.merge_tiles("kept", [TileWrite("k0", 0, b"1")], add)
        store.drop_table("t")
        assert store.get_latest("t", [f"k{i}" for i in range(50)]) == [None] * 50
        assert all(store.get_tiles("t", f"k{i}", [0]) == [None] for i in range(50))
        assert store.get_latest("kept", ["k0"]) == [(1.0, b"v")]
        assert store.get_tiles("kept", "k0", [0]) == [b"1"]
        assert store.get_mark("m") == "x"  # watermarks are not per table
        store.drop_table("never-written")
        store.put_latest("t", [("k0", 0.5, b"again")])  # a dropped table starts afresh
        assert store.get_latest("t", ["k0"]) == [(0.5, b"again")]

    def test_concurrent_merges_lose_no_update(self, store: OnlineStore) -> None:
        threads_n, rounds = 4, 25
        errors: list[BaseException] = []
        start = threading.Barrier(threads_n)

        def bump(worker: int) -> None:
            try:
                start.wait()
                for i in range(rounds):
                    store.merge_tiles(
                        "t",
                        [
                            TileWrite("k", 0, b"1"),
                            TileWrite("k", 60, b"2"),
                            TileWrite("j", 0, b"1"),
                        ],
                        add,
                        mark=(f"w{worker}", str(i)),
                    )
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=bump, args=(w,)) for w in range(threads_n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        total = threads_n * rounds
        assert store.get_tiles("t", "k", [0, 60]) == [str(total).encode(), str(2 * total).encode()]
        assert store.get_tiles("t", "j", [0]) == [str(total).encode()]
        assert [store.get_mark(f"w{w}") for w in range(threads_n)] == [str(rounds - 1)] * threads_n

    def test_large_values_round_trip(self, store: OnlineStore) -> None:
        big = os.urandom(1 << 20)
        store.put_latest("t", [("k", 1.0, big)])
        store.merge_tiles("t", [TileWrite("k", 0, big)], concat)
        assert store.get_latest("t", ["k"]) == [(1.0, big)]
        assert store.get_tiles("t", "k", [0]) == [big]
        assert store.fetch(Fetch(latest=[("t", "k")], tiles=[("t", "k", [0])])) == (
            [(1.0, big)],
            [[big]],
        )
