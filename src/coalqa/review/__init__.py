"""``coalqa review``: a safety engineer checks every QA pair beside its clause before training.

Stages: QA pairs (``coalqa generate``) + their chunks → review decisions (this package, a local web app) → reviewed
pairs (``coalqa review export``) → ``coalqa train``; approved pairs of chosen clauses → an evaluation set
(``--as_eval``); answers of ``coalqa serve`` marked wrong and corrected → new pairs (``--feedback``).

Failure contract (what a reviewer can rely on):

* **Nothing acknowledged is lost.** A decision is appended to the review log beside the QA file
  (``QAdata_all.review.jsonl``, :mod:`coalqa.review.log`) in one write and ``fsync``'d before the server answers;
  the page shows "saved" only after that answer. A kill -9 or power cut afterwards loses nothing.
* **Append-only; the latest decision wins.** Nothing in the log is rewritten; an undo is a new line. The QA file and
  the chunks file are only read, never modified.
* **A crash in mid-write** leaves at most one unfinished last line, which was never acknowledged: it is skipped and
  reported (``coalqa review status``, the page), and the next write closes it and records a ``torn`` note. Any other
  unreadable line is an error naming the file and line (the log was damaged or edited by hand).
* **No silent overwrite.** Every save names the version of the pair's decisions it was based on; when another reviewer
  decided meanwhile, the save is refused (HTTP 409) and the other decision is shown.
* **Regulation updates.** A decision rests on the content hash of the clause the reviewer saw; when the chunks file
  given later holds another text for that chunk, or none, the pair is ``stale``: back to pending, with the old text
  (kept in the log) and the new one shown side by side. Exports never include a stale pair.
* **Security.** The app listens on 127.0.0.1 by default; bound to another address it refuses to start without a token
  and a reviewer name. Every route then needs the token; request bodies are size-limited; QA and clause text is only
  ever inserted into the page as text. Files are written with the user's umask.
"""

from coalqa.review.log import ReviewLog, log_path_for
from coalqa.review.pairs import ReviewSet, pair_id

__all__ = ["ReviewLog", "ReviewSet", "log_path_for", "pair_id"]
