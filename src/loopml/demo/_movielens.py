"""A second workload: MovieLens latest-small (GroupLens, 2018; 100,836 ratings of 9,742 movies by
610 users, 1996-2018), as a project whose requests are ratings replayed in time order.

It is the book's peaked, high-cardinality request distribution: a few hundred popular movies get
a large share of the ratings, thousands get one or two. The model predicts whether a user will
like a movie (rating >= 4) from the movie's genres and year (a lookup) and its ratings in the
previous 30 days (a window); predictions are keyed by movie for static serving.

The files are not shipped with loopml (non-commercial terms, see the data set's README.txt):
:func:`movielens_project` reads them from a folder the caller names.
"""

from __future__ import annotations

import csv
import re
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from loopml._project import Project
from loopml.errors import DataError, NotFoundError

# The genres of movies.csv (its README lists them), as 0/1 columns of the movies source.
GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip


def _column(genre: str) -> str:
    return "genre_" + re.sub(r"[^a-z0-9]+", "_", genre.lower()).strip("_")


MOVIELENS_SPEC = f"""\
# MovieLens latest-small: ratings replayed as requests, keyed by movie for static serving.
project: movielens

sources:
  ratings:
    format: csv
    timestamp: rated_at              # ISO, derived from the Unix seconds of ratings.csv
    entity_keys: [movieId, userId]
    primary_key: [userId, movieId]
    schema:
      columns:
        rated_at: {{type: timestamp}}
        rating: {{min: 0.5, max: 5}}
    checks:
      not_before: 1995-01-01
  movies:
    format: csv
    primary_key: [movieId]

entities:
  movie: [movieId]

features:
  event: {{source: ratings}}         # a request is a user about to rate a movie, at rated_at
  request: [movieId, userId, rated_at]
  lookups:
    movie:                           # genres and year, parsed from movies.csv
      source: movies
      entity: movie
      features: [year, genre_count, {", ".join(_column(g) for g in GENRES)}]
  windows:
    movie_ratings:                   # the movie's ratings in the previous 30 days
      source: ratings
      entity: movie
      windows: [30d]
      tile: 1d
      prefix: movie_
      aggregates:
        ratings: count
        rating: mean(rating)
  derived:
    movie_age: "year(rated_at) - movie_year"
  label:
    name: liked
    expr: "rating >= 4"

model:
  name: movielens_liked
  task: binary
  params: {{n_estimators: 60, num_leaves: 15, learning_rate: 0.1, min_child_samples: 50}}
  split: {{method: time, test: 0.2, valid: 0.1}}

gate:
  backtest: 90d

serving:
  static:
    key: [movieId]
  hybrid:
    head: 1000
"""


def _source_dir(datasets_dir: str | Path) -> Path:
    base = Path(datasets_dir)
    for folder in (base / "ml-latest-small", base):
        if (folder / "ratings.csv").exists() and (folder / "movies.csv").exists():
            return folder
    raise NotFoundError(
        f"no MovieLens ratings.csv and movies.csv in {base} or {base / 'ml-latest-small'}: "
        "download ml-latest-small from https://grouplens.org/datasets/movielens/"
    )


def read_ratings(datasets_dir: str | Path) -> pa.Table:
    """MovieLens ratings in time order: ``userId, movieId, rating, rated_at`` (a UTC timestamp
    made from the Unix seconds of ratings.csv)."""
    ratings = pacsv.read_csv(_source_dir(datasets_dir) / "ratings.csv")
    seconds = ratings["timestamp"].cast(pa.int64())
    table = pa.table(
        {
            "userId": ratings["userId"],
            "movieId": ratings["movieId"],
            "rating": ratings["rating"],
            "rated_at": pc.multiply(seconds, 1_000_000).cast(pa.timestamp("us", tz="UTC")),
        }
    )
    return table.sort_by(
        [("rated_at", "ascending"), ("userId", "ascending"), ("movieId", "ascending")]
    )


def write_movielens_csvs(
    datasets_dir: str | Path, dest: str | Path, *, until: datetime | None = None
) -> tuple[Path, Path]:
    """Write ``ratings.csv`` (with ``rated_at`` in ISO instead of Unix seconds; only the ratings
    made before ``until`` when given) and ``movies.csv`` (year and genre columns instead of the
    title and the genre list) under ``dest``."""
    src = _source_dir(datasets_dir)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    ratings = read_ratings(src)
    if until is not None:
        ratings = ratings.filter(
            pc.less(ratings["rated_at"], pa.scalar(until, ratings["rated_at"].type))
        )
    iso = pc.strftime(ratings["rated_at"], format="%Y-%m-%dT%H:%M:%SZ")
    out = ratings.set_column(ratings.column_names.index("rated_at"), "rated_at", iso)
    ratings_path = dest / "ratings.csv"
    pacsv.write_csv(out, ratings_path, pacsv.WriteOptions(quoting_style="none"))
    movies_path = dest / "movies.csv"
    year = re.compile(r"\((\d{4})\)\s*$")
    with (
        open(src / "movies.csv", newline="", encoding="utf-8") as f,
        open(movies_path, "w", newline="", encoding="utf-8") as g,
    ):
        writer = csv.writer(g)
        writer.writerow(["movieId", "year", "genre_count", *(_column(x) for x in GENRES)])
        for row in csv.DictReader(f):
            found = year.search(row["title"].strip())
            genres = set(row["genres"].split("|")) - {"(no genres listed)"}
            writer.writerow(
                [
                    row["movieId"],
                    found.group(1) if found else "",
                    len(genres),
                    *(int(x in genres) for x in GENRES),
                ]
            )
    return ratings_path, movies_path


def movielens_project(
    root: str | Path,
    datasets_dir: str | Path,
    *,
    until: datetime | None = None,
    promote: bool = True,
) -> Project:
    """A MovieLens project in ``root``: the CSVs written and ingested (the ratings made before
    ``until``, when given: the later ones are then requests the project has not seen, see
    :func:`replayed_requests`), the online store materialized, a model trained, through the gate
    and promoted to champion (the gate refusing it raises :class:`~loopml.GateError`)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "loopml.yaml").write_text(MOVIELENS_SPEC, encoding="utf-8")
    ratings, movies = write_movielens_csvs(datasets_dir, root / "data", until=until)
    project = Project.open(root)
    try:
        for name, path in (("movies", movies), ("ratings", ratings)):
            (result,) = project.data.ingest(name, [path], by="movielens")
            if result.rows_accepted == 0 or result.rows_quarantined:
                raise DataError(
                    f"ingesting {path} landed {result.rows_accepted:,} rows and quarantined "
                    f"{result.rows_quarantined:,}: {result.reasons}"
                )
        project.features.materialize()
        if promote:
            trained = project.models.train(by="movielens", note="MovieLens: liked (rating >= 4)")
            version = trained.version
            assert version is not None
            project.models.evaluate(version.version, by="movielens")
            project.models.promote(
                version.version, by="movielens", reason="the first MovieLens model"
            )
    except BaseException:
        project.close()
        raise
    return project


def replayed_requests(datasets_dir: str | Path, *, since: datetime | None = None) -> pa.Table:
    """The ratings (made at or after ``since``, when given) as request rows ``movieId, userId,
    rated_at``, in the order they were made."""
    ratings = read_ratings(datasets_dir)
    if since is not None:
        ratings = ratings.filter(
            pc.greater_equal(ratings["rated_at"], pa.scalar(since, ratings["rated_at"].type))
        )
    return ratings.select(["movieId", "userId", "rated_at"])
