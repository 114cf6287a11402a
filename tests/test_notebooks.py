"""The notebooks execute top to bottom (nbclient), so they cannot rot; each starts with a Colab-ready setup cell.

A new notebook in notebooks/ is picked up by both tests (parametrised over the folder)."""
import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("ATM_NOTEBOOK_STEPS", "60")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the loss plot


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_first_cell_installs_on_colab_without_setup(path):
    """Colab: clone from a default repository (overridable), jax[tpu] on a TPU runtime; no assert on the
    environment, so "Run all" works in a fresh Colab session."""
    first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code").source
    assert "google.colab" in first and 'os.environ.get("ATM_GIT_URL", "http' in first
    assert "[tpu]" in first and "assert " not in first
