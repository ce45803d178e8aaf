"""Retrieval evaluation on BEIR-format data: the parts the use case (core/evaluation.py: ingest
the corpus, run its queries in each search mode, time them) is built from.

    dataset.py  corpus/queries/qrels files, checked before anything is embedded
    ranking.py  chunk hits -> document ranking (a document ranks at its best chunk)
    metrics.py  trec_eval measures (nDCG@10, Recall@100, MRR@10), ANN recall, latency
    report.py   JSON, markdown and a rich table
"""

from embedsearch.evaluation.dataset import BeirDataset, DatasetError, load_dataset

__all__ = ["BeirDataset", "DatasetError", "load_dataset"]
