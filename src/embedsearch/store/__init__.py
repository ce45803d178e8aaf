"""PostgreSQL storage: all SQL of the project lives in this package."""

from embedsearch.store.pgstore import PgStore
from embedsearch.store.records import ChunkRows, SearchHit

__all__ = ["ChunkRows", "PgStore", "SearchHit"]
