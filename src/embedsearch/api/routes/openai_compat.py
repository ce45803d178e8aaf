"""POST /v1/embeddings: the OpenAI embeddings protocol, served by our own model.

Any OpenAI client (the official SDK, LangChain, LlamaIndex) can point its base URL here.
The rules (which model names, the dimension cut) are core.embeddings'.
"""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter

from embedsearch.api.deps import DepsDep
from embedsearch.api.limits import JsonRoute
from embedsearch.api.schemas import (
    ERROR_RESPONSES,
    OpenAIEmbedding,
    OpenAIEmbeddingsRequest,
    OpenAIEmbeddingsResponse,
    OpenAIUsage,
)
from embedsearch.core.embeddings import embed_texts

router = APIRouter(tags=["openai"], route_class=JsonRoute)


@router.post("/v1/embeddings", response_model=OpenAIEmbeddingsResponse, responses=ERROR_RESPONSES)
async def create_embeddings(
    body: OpenAIEmbeddingsRequest, deps: DepsDep
) -> OpenAIEmbeddingsResponse:
    texts = [body.input] if isinstance(body.input, str) else body.input
    result = await embed_texts(deps, texts, model=body.model, dimensions=body.dimensions)
    batch = result.batch
    data = [
        OpenAIEmbedding(index=i, embedding=_encode(vector, body.encoding_format))
        for i, vector in enumerate(batch.vectors)
    ]
    tokens = sum(batch.token_counts) if batch.token_counts else 0
    return OpenAIEmbeddingsResponse(
        data=data,
        model=result.model,
        usage=OpenAIUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


def _encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]
