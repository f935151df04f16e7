"""Stage 4: answer questions with the fine-tuned model (``coalqa ask``; Python API for eval/serving).

``load_model(peft_model)`` → :class:`LoadedModel`; ``answer(loaded, questions, AskConfig(...))`` →
result dicts; ``stream_answer`` for token-by-token chat. See :mod:`coalqa.ask.inference`.
"""

from coalqa.ask.config import AskConfig
from coalqa.ask.inference import LoadedModel, Stream, answer, load_model, stream_answer

__all__ = ["AskConfig", "LoadedModel", "Stream", "answer", "load_model", "stream_answer"]
