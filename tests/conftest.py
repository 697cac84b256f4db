"""Test session setup: an isolated HF_HOME, a test token and the embedded Hub on loopback.

The Hub client libraries read HF_ENDPOINT, HF_HUB_DISABLE_XET and HF_HOME at import time,
so they are set here, at the top, before anything imports huggingface_hub or datasets.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SESSION_DIR = Path(tempfile.mkdtemp(prefix="ltd-hub-tests-"))
HUB_PORT = _free_port()
ENDPOINT = f"http://127.0.0.1:{HUB_PORT}"

# Tokens the embedded Hub accepts in tests: user ltd-tester (write), ltd-other (write),
# ltd-reader (read-only). None of them is ever a real Hub token.
TEST_USER = "ltd-tester"
TEST_TOKEN = "hf_ltdtesterTOKEN0123456789abcdefghij"
OTHER_USER = "ltd-other"
OTHER_TOKEN = "hf_ltdotherTOKEN0123456789abcdefghijk"
READ_USER = "ltd-reader"
READ_TOKEN = "hf_ltdreaderTOKEN0123456789abcdefghij"
HUB_TOKENS = [f"{TEST_USER}={TEST_TOKEN}", f"{OTHER_USER}={OTHER_TOKEN}", f"{READ_USER}={READ_TOKEN}:read"]

os.environ.update(
    {
        "HF_ENDPOINT": ENDPOINT,
        "HF_HOME": str(SESSION_DIR / "hf_home"),
        "HF_TOKEN": TEST_TOKEN,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_ETAG_TIMEOUT": "30",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "LTD_HUB_CACHE": str(SESSION_DIR / "ltd_cache"),
    }
)
# The GGUF -> safetensors conversion of the seeded base model is kept across sessions (~20 s once).
os.environ.setdefault("LTD_HUB_SEED_DIR", str(Path.home() / ".cache" / "ltd-hub" / "seed"))
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("HUGGING_FACE_HUB_TOKEN", None)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
LTD_NLI = SHARED / "data" / "ltd-nli"
ARTIFACTS = REPO_ROOT / "test-artifacts"

pytest_plugins = ["model_fixtures"]


@pytest.fixture(scope="session", autouse=True)
def session_dir():
    """The session's folder (Hub storage, HF_HOME, ltd-hub cache: ~1 GB after a full run), removed at the end.

    Every fixture that uses it depends on this one, so it is torn down last, after the Hub stopped.
    ``LTD_HUB_KEEP_TEST_DIR=1`` keeps it for a look.
    """
    yield SESSION_DIR
    if os.environ.get("LTD_HUB_KEEP_TEST_DIR") != "1":
        shutil.rmtree(SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def hub_root(session_dir: Path) -> Path:
    """Storage root of the session's embedded Hub."""
    return session_dir / "hub"


@pytest.fixture(scope="session")
def hub(hub_root: Path):
    """The embedded Hub, started once per test session on first use; yields its endpoint URL.

    Opt-in: a module that talks to it says ``pytestmark = pytest.mark.usefixtures("hub")`` (fixtures that
    push, like the tiny model's, depend on it), so selection or config tests start no server.
    """
    from ltd_hub.hub_server.serve import serve_hub

    with serve_hub(hub_root, port=HUB_PORT, tokens=HUB_TOKENS) as endpoint:
        assert endpoint == ENDPOINT
        yield endpoint


@pytest.fixture(autouse=True)
def isolated_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Each test sees only the test token: no stored login of the developer can leak in."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("LTD_HUB_DEBUG", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf_stored_tokens"))
    yield


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray, started once for the session: 2 CPUs, a small object store (the minimum Ray accepts)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'ltd-hub[ray]' (CI installs it)")
    import ray.data

    ray.init(num_cpus=2, object_store_memory=80 * 2**20, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture
def ltd_nli() -> Path:
    """The shared real NLI data (read-only, never copied into the repo)."""
    if not LTD_NLI.is_dir():
        pytest.skip(f"shared data not found at {LTD_NLI}")
    return LTD_NLI


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave files worth looking at (screenshots, rendered cards)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_sessionstart(session):
    # CI (.ci/run sets the variable) must fail, not skip, when the real data is missing beside the clone.
    if os.environ.get("LTD_HUB_REQUIRE_SHARED_DATA") == "1" and not LTD_NLI.is_dir():
        pytest.exit(
            f"the shared data is missing at {LTD_NLI} (LTD_HUB_REQUIRE_SHARED_DATA=1): put ../shared beside the clone", returncode=1
        )


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        has_gpu = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)
