"""The public efficacy scenario on the GPU path: 60 pairs, real DPO through the CLI, the gate,
then greedy answers to 20 new questions from the newly active adapter (retrieval off: the
embedder does not travel to the device). It works in a fresh temporary data folder unless
CHAT_DATA_DIR names one, so a checkout's own database is never touched.

Run from the checkout (docs/gpu.md):
    `CHAT_TOP_K=0 PYTHONPATH=. python tools/gpu/efficacy.py`
"""
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("CHAT_MODEL_CACHE", os.path.abspath("data/models"))  # as make fills it
os.environ.setdefault("CHAT_DATA_DIR", tempfile.mkdtemp(prefix="efficacy-"))

from chat.config import load_config
from chat.engine.engine import GenParams
from chat.runtime import build_runtime
from tests.test_training import import_pairs
from tests.test_training_efficacy import HELDOUT, short_share, training_pairs

cfg = load_config()
t = time.time()
rt = build_runtime(cfg)
p = next(rt.engine.model.parameters())
print(f"engine: {rt.engine.device} {p.dtype} on {p.device}, fast path {rt.engine.fast_mode}, "
      f"load {time.time() - t:.1f}s")
import_pairs(rt.store, [(q, "Short answer: " + a, a) for q, a in training_pairs()])
t = time.time()
before = short_share(rt.service, HELDOUT, "base")
print(f"before: {before:.2f} ({time.time() - t:.1f}s for 20 answers)")
t = time.time()
proc = subprocess.run([sys.executable, "launch.py", "train", "--method", "dpo", "--json"],
                      capture_output=True, text=True)
print(f"train rc {proc.returncode} in {time.time() - t:.1f}s")
if proc.returncode != 0:
    sys.exit(proc.stderr[-3000:])
print(proc.stdout[-2500:])
print(proc.stderr[-2500:])
after = short_share(rt.service, HELDOUT, None)
print(f"after: {after:.2f} (active {rt.service.adapters.active})")
answer = rt.service.ask("What is the capital of Peru?", "eval", adapter=None,
                        params=GenParams(temperature=0.0, max_new_tokens=24), record=False)
print("answer:", json.dumps(answer.text))
