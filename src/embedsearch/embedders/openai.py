"""OpenAI embeddings (or any server speaking the OpenAI embeddings protocol) via the official SDK."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from embedsearch.core.errors import InvalidInput, ProviderUnavailable
from embedsearch.embedders.base import EmbeddingBatch, concat

log = logging.getLogger(__name__)

MAX_INPUTS_PER_REQUEST = 2048  # the OpenAI API's limit per embeddings request
KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
# Models that reject the `dimensions` parameter.
_FIXED_SIZE_MODELS = {"text-embedding-ada-002"}


class OpenAIEmbedder:
    def __init__(
        self,
        model: str,
        *,
        dimensions: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 4,
    ) -> None:
        import openai

        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            if base_url is None:
                raise InvalidInput(
                    "OPENAI_API_KEY is not set (needed for the OpenAI API)", field="OPENAI_API_KEY"
                )
            api_key = (
                "unused"  # self-hosted compatible servers often need no key; the SDK wants one
            )
        # The SDK retries 429, 5xx, timeouts and connection errors with exponential backoff.
        self._client = openai.OpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )
        self._model = model
        self._request_dimensions = dimensions if model not in _FIXED_SIZE_MODELS else None
        self._dimensions = dimensions or KNOWN_DIMENSIONS.get(model) or self._probe_dimensions()
        log.info("OpenAI-compatible embedder %s (%d dims)", model, self._dimensions)

    @property
    def name(self) -> str:
        return self._model

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def _probe_dimensions(self) -> int:
        return int(self._request(["dimension probe"]).shape[1])

    def _request(self, texts: Sequence[str]) -> Any:
        import openai

        kwargs: dict[str, Any] = {"model": self._model, "input": list(texts)}
        if self._request_dimensions is not None:
            kwargs["dimensions"] = self._request_dimensions
        try:
            response = self._client.embeddings.create(**kwargs)
        except openai.APIStatusError as exc:
            raise _status_error(exc.status_code, type(exc).__name__) from None
        except openai.APITimeoutError:
            raise ProviderUnavailable("the embedding provider did not answer in time") from None
        except openai.APIError as exc:  # connection errors, after the SDK's retries
            log.warning("embedding provider unreachable (%s)", type(exc).__name__)
            raise ProviderUnavailable("the embedding provider is unreachable") from None
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(texts):
            raise ProviderUnavailable(
                f"embedding provider returned {len(rows)} vectors for {len(texts)} inputs"
            )
        # As the server gives them: collections normalize unless they keep raw vectors.
        return np.asarray([row.embedding for row in rows], dtype=np.float32)

    def embed(self, texts: Sequence[str]) -> EmbeddingBatch:
        batches = []
        for start in range(0, len(texts), MAX_INPUTS_PER_REQUEST):
            part = texts[start : start + MAX_INPUTS_PER_REQUEST]
            vectors = self._request(part)
            if vectors.shape[1] != self._dimensions:
                raise ProviderUnavailable(
                    f"embedding provider returned {vectors.shape[1]}-d vectors, "
                    f"expected {self._dimensions}"
                )
            batches.append(EmbeddingBatch(vectors, None, [False] * len(part)))
        return concat(batches)

    def close(self) -> None:
        self._client.close()


# The provider's own error text never reaches clients or logs: providers echo requests (and
# so credentials) back in their errors. Our words, by status class, and the status.
_REASONS = {
    401: "the embedding provider refused the service's credentials",
    403: "the embedding provider refused the service's credentials",
    404: "the embedding provider does not know the configured model",
    429: "the embedding provider is rate limiting the service",
}


def _status_error(status: int, kind: str) -> InvalidInput | ProviderUnavailable:
    log.warning("embedding provider answered HTTP %d (%s)", status, kind)
    if status in (400, 413, 422):
        return InvalidInput(
            f"the embedding provider rejected the input (HTTP {status})", field="text"
        )
    reason = _REASONS.get(status, "the embedding provider failed")
    return ProviderUnavailable(f"{reason} (HTTP {status})")
