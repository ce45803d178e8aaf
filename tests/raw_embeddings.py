"""A real OpenAI-compatible embeddings server whose vectors are NOT unit length (as some
models and servers return them): each text gets a fixed random direction and a length from
0.2 to 5. Served on a port by LiveServer; the OpenAI SDK talks to it over HTTP."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from fastapi import FastAPI

DIMENSIONS = 8


def raw_vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(DIMENSIONS)
    return (direction / np.linalg.norm(direction) * rng.uniform(0.2, 5.0)).astype(np.float32)


def create_raw_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/embeddings")
    async def embeddings(body: dict[str, Any]) -> dict[str, Any]:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return {
            "object": "list",
            "model": body["model"],
            "data": [
                {"object": "embedding", "index": i, "embedding": raw_vector(t).tolist()}
                for i, t in enumerate(texts)
            ],
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }

    return app
