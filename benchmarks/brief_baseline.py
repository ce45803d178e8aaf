"""The brief's original code path, as the baseline to beat: torch, and for each chunk one
model call, one INSERT and one commit. Reads [ids, texts] as JSON on stdin, prints chunks/s.

    python -m benchmarks.brief_baseline POSTGRES_URL < chunks.json
"""

from __future__ import annotations

import json
import sys
import time

import psycopg
from pgvector.psycopg import register_vector

from embedsearch.embedders.model_dir import resolve_model_dir

CREATE = (
    "CREATE TABLE IF NOT EXISTS brief_chunks (chunk_id VARCHAR(255) PRIMARY KEY, "
    "embedding VECTOR(384), created_at TIMESTAMP DEFAULT NOW(), model_name VARCHAR(100))"
)
INSERT = (
    "INSERT INTO brief_chunks (chunk_id, embedding, model_name) VALUES (%s, %s, %s) "
    "ON CONFLICT (chunk_id) DO UPDATE SET embedding = EXCLUDED.embedding"
)


def main() -> None:
    ids, texts = json.load(sys.stdin)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(resolve_model_dir("all-MiniLM-L6-v2")[1]), device="cpu")
    with psycopg.connect(sys.argv[1]) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute(CREATE)
        conn.commit()
        start = time.perf_counter()
        for chunk_id, text in zip(ids, texts, strict=True):
            embedding = model.encode(text)
            conn.execute(INSERT, (chunk_id, embedding, "all-MiniLM-L6-v2"))
            conn.commit()
        print(len(ids) / (time.perf_counter() - start))


if __name__ == "__main__":
    main()
