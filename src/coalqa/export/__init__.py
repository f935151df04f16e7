"""Export stage: the fine-tuned model for other runtimes, each artefact checked against base + adapter.

>>> report = export_model("output/deepseek-coal-safety-20261129-101500", "export", ExportConfig(format="all"))

Writes a merged safetensors model (``merged/``), a GGUF made by llama.cpp's own converter and an Ollama
``Modelfile`` (``gguf/``), a vLLM ``serve.sh`` with a copy of the adapter (``vllm/``), and
``export_report.json``/``.md``. See :mod:`coalqa.export.run`.
"""

from coalqa.export.config import ExportConfig
from coalqa.export.run import export_model, formats_for, report_markdown

__all__ = ["ExportConfig", "export_model", "formats_for", "report_markdown"]
