"""Training stage: QA pairs (``QAdata_all.json``) → LoRA adapter folder.

``from coalqa.train import TrainConfig, train``; ``train(config) -> Path`` (the run folder). Heavy
libraries (torch, transformers, TRL, PEFT) are imported inside the functions.
"""

from coalqa.train.config import TrainConfig
from coalqa.train.trainer import TrainResult, prepare, run, run_finished, train

__all__ = ["TrainConfig", "TrainResult", "prepare", "run", "run_finished", "train"]
