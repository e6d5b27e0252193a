"""Sampling (Designing Machine Learning Systems, chapter 4): simple random, stratified, weighted,
reservoir and importance sampling.

The batch samplers take a row count or one value per row and return sorted row indices (int64),
ready for ``table.take(idx)``; they are vectorized with numpy and take ``seed`` for repeatable
draws. The reservoirs sample streams of unknown length in O(k) memory.

>>> import pyarrow as pa
>>> table = pa.table({"label": ["a", "a", "a", "b"], "x": [1, 2, 3, 4]})
>>> table.take(stratified(table["label"], n=2, seed=0))["label"].to_pylist()
['a', 'b']
"""

from loopml.sampling._importance import density_ratio, effective_sample_size, importance_sample
from loopml.sampling._reservoir import Reservoir, WeightedReservoir
from loopml.sampling._simple import simple_random
from loopml.sampling._stratified import stratified
from loopml.sampling._weighted import weighted

__all__ = [
    "Reservoir",
    "WeightedReservoir",
    "density_ratio",
    "effective_sample_size",
    "importance_sample",
    "simple_random",
    "stratified",
    "weighted",
]
