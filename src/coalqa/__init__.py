"""coalqa: turn a folder of Chinese coal-mine-safety regulations into a question-answering model.

Stages (one subpackage each, data flows one way):
documents -> ``coalqa.corpus`` (chunks) -> ``coalqa.generate`` (QA pairs) -> ``coalqa.train``
(adapter) -> ``coalqa.ask`` (answers) -> ``coalqa.eval`` (scores). ``coalqa.cli`` dispatches to them.
"""

__version__ = "0.1.0"
