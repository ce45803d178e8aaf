"""embedsearch: semantic search on PostgreSQL + pgvector."""

__version__ = "0.1.0"
