"""coalqa: turn a folder of Chinese coal-mine-safety regulations into a question-answering model.

Stages (one subpackage each, data flows one way):
documents -> ``coalqa.corpus`` (chunks) -> ``coalqa.generate`` (QA pairs) -> ``coalqa.train``
(adapter) -> ``coalqa.ask`` (answers) -> ``coalqa.eval`` (scores); ``coalqa.retrieval`` indexes the chunks
so that answers cite the clauses they rest on (``coalqa.retrieve(index, question, k)``). ``coalqa.cli`` dispatches
to them.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``coalqa.retrieve``: :func:`coalqa.retrieval.retrieve`, imported on first use (keeps ``import coalqa`` light)."""
    if name == "retrieve":
        from coalqa.retrieval import retrieve

        return retrieve
    raise AttributeError(f"module 'coalqa' has no attribute {name!r}")
