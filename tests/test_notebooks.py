"""Execute the Colab notebooks headless with tiny settings (STYLEJAX_QUICK=1), so they
never rot: every cell must run without error and the figures must be drawn."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "colab").glob("*.ipynb"))
SHIPPED_MODEL = ROOT / "stylejax" / "assets" / "stylex_default" / "stylex.json"


@pytest.mark.skipif(not SHIPPED_MODEL.exists(),
                    reason="the notebooks use the shipped StyleX model, which is not in this "
                           "checkout (stylejax/assets/stylex_default)")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEJAX_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, f"{path.name} drew {len(images)} figure(s)"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "stylejax" in text  # the install cell found the installed package


def test_notebooks_exist_and_have_no_stored_outputs():
    assert NOTEBOOKS, "colab/ holds no notebooks"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
