"""Retrieval evaluation on BEIR-format data: load a dataset, run its queries in each search mode,
score the rankings with trec_eval (nDCG@10, Recall@100, MRR@10), and report them.

    dataset.py  corpus/queries/qrels files, checked before anything is embedded
    ranking.py  chunk hits -> document ranking (a document ranks at its best chunk)
    metrics.py  trec_eval measures, ANN recall, latency percentiles
    runner.py   ingest the corpus into a scratch collection, run the queries, time them
    report.py   JSON, markdown and a rich table
"""

from embedsearch.evaluation.dataset import BeirDataset, DatasetError, load_dataset
from embedsearch.evaluation.runner import EvalOptions, EvalResult, ModeResult, evaluate

__all__ = [
    "BeirDataset",
    "DatasetError",
    "EvalOptions",
    "EvalResult",
    "ModeResult",
    "evaluate",
    "load_dataset",
]
