"""An embedded Hugging Face Hub-compatible server (git storage, LFS, the Hub's HTTP API).

The real Hub client libraries talk to it unchanged through ``HF_ENDPOINT``; see
``serve.serve_hub`` to run it and ``seed.seed_hub`` to preload the base model and encoder.
"""

from ltd_hub.extras import require

# The server's dependencies are the `server` extra: without them, one line says how to install them.
require("server", "the embedded Hub")
