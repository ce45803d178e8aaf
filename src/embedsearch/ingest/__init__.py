"""Ingestion of files and corpora: read documents, then chunk, embed and store them in batches."""
