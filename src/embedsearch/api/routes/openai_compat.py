"""POST /v1/embeddings: the OpenAI embeddings protocol, served by our own model.

Any OpenAI client (the official SDK, LangChain, LlamaIndex) can point its base URL here.
"""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter

from embedsearch.api.deps import ServiceDep
from embedsearch.api.schemas import (
    ERROR_RESPONSES,
    OpenAIEmbedding,
    OpenAIEmbeddingsRequest,
    OpenAIEmbeddingsResponse,
    OpenAIUsage,
)
from embedsearch.embedders.base import normalize_rows
from embedsearch.errors import InvalidInput, NotFound

router = APIRouter(tags=["openai"])

MAX_INPUTS = 2048  # the OpenAI API's own limit


def _accepts_model(requested: str, served: str) -> bool:
    short = requested.rsplit("/", 1)[-1].removeprefix("local:")
    return short == served


@router.post("/v1/embeddings", response_model=OpenAIEmbeddingsResponse, responses=ERROR_RESPONSES)
async def create_embeddings(
    body: OpenAIEmbeddingsRequest, service: ServiceDep
) -> OpenAIEmbeddingsResponse:
    if not _accepts_model(body.model, service.model):
        raise NotFound(
            f"model {body.model!r} is not served here; this server serves {service.model!r}",
            field="model",
        )
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise InvalidInput("input must not be empty", field="input")
    if len(texts) > MAX_INPUTS:
        raise InvalidInput(f"input has {len(texts)} items; at most {MAX_INPUTS}", field="input")
    if body.dimensions is not None and body.dimensions > service.dimensions:
        raise InvalidInput(
            f"dimensions must be at most {service.dimensions} for {service.model}",
            field="dimensions",
        )
    batch = await service.embed_texts(texts)
    vectors = batch.vectors
    if body.dimensions is not None and body.dimensions < service.dimensions:
        # Shortened like OpenAI's text-embedding-3: keep the leading dimensions, renormalize.
        # (all-MiniLM-L6-v2 was not trained for this, so quality drops with the size.)
        vectors = normalize_rows(vectors[:, : body.dimensions])
    data = [
        OpenAIEmbedding(index=i, embedding=_encode(vector, body.encoding_format))
        for i, vector in enumerate(vectors)
    ]
    tokens = sum(batch.token_counts) if batch.token_counts else 0
    return OpenAIEmbeddingsResponse(
        data=data,
        model=service.model,
        usage=OpenAIUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


def _encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]
