"""The model in training as the runtime serves it: a bundle exported once from a checkpoint,
whose model.gguf is rewritten from the live weights on each refresh. RL's rollouts and CPU
validation search through it: the C++ constrained beam search is several times faster than the
reference decoder, and what it scores is what a served bundle would answer."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


class RuntimeSnapshot:
    """`ckpt`/`which`: any weights of the run (the trie, SIDs, tokenizer and manifest do not
    depend on them); the bundle lives in a temporary folder until close(). Cold-start mixing
    is off: the model alone is scored."""

    def __init__(self, ckpt: str | Path, threads: int | None, *, which: str = "best"):
        from ..export.bundle import export_bundle

        self._tmp = Path(tempfile.mkdtemp(prefix="genrec-snapshot-"))
        self.bundle = self._tmp / "bundle"
        self.threads = threads
        self.rec = None
        try:
            export_bundle(ckpt, self.bundle, quant="f32", text_encoder=False, which=which)
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise

    def refresh(self, model, tok):
        """The Recommender over the current weights of `model` (f32, as trained)."""
        from ..export.gguf_export import write_gguf
        from ..runtime import Recommender

        self.release()
        write_gguf(model, tok, self.bundle / "model.gguf", quant="f32")
        # verify=False: the manifest's checksum is the exported weights', not these
        self.rec = Recommender.load(self.bundle, n_threads=self.threads, verify=False)
        self.rec.set_cold_start(None)
        return self.rec

    def release(self) -> None:
        """Close the Recommender (its weights and contexts), keeping the bundle for the next
        refresh: training between validations should not hold a second copy of the model."""
        if self.rec is not None:
            self.rec.close()
            self.rec = None

    def close(self) -> None:
        self.release()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "RuntimeSnapshot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
