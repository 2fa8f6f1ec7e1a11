"""The notebooks run for real (nbclient) on a small configuration; a broken notebook fails here."""

import nbformat
import pytest
from nbclient import NotebookClient

from tests.studies.conftest import REPO

NOTEBOOKS = REPO / "notebooks"
NAMES = ["drift.ipynb", "accuracy_vs_noise.ipynb", "accuracy_vs_k.ipynb"]


def _execute(name, monkeypatch, csv, out):
    monkeypatch.setenv("AIMC_LSH_NOTEBOOK_CSV", str(csv))
    monkeypatch.setenv("AIMC_LSH_NOTEBOOK_OUT", str(out))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return nb


def _outputs(nb, kind):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if kind in o.get("data", {})]


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name} has saved outputs"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_runs_a_small_sweep_when_no_results_exist(name, tmp_path, monkeypatch):
    nb = _execute(name, monkeypatch, tmp_path / "missing.csv", tmp_path)
    assert list(tmp_path.glob("*/*_digits.csv")), "the notebook did not run its small sweep"
    assert _outputs(nb, "image/png"), "no figure was drawn"
    assert _outputs(nb, "text/html") or _outputs(nb, "text/plain")


@pytest.mark.slow
def test_reads_an_existing_study_csv(tmp_path, monkeypatch, drift_reference):
    _, out = drift_reference
    nb = _execute("drift.ipynb", monkeypatch, out / "drift_pcm_digits.csv", tmp_path)
    assert not list(tmp_path.glob("*/*.csv"))  # it read the CSV instead of sweeping
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"{len(open(out / 'drift_pcm_digits.csv').readlines()) - 1} rows from" in text


def test_a_broken_notebook_fails(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOKS / "drift.ipynb", as_version=4)
    nb.cells[2].source = nb.cells[2].source.replace('"--times", "1s,1d,1y,10y"', '"--times=-1s"')
    broken = tmp_path / "broken.ipynb"
    nbformat.write(nb, broken)
    monkeypatch.setenv("AIMC_LSH_NOTEBOOK_CSV", str(tmp_path / "missing.csv"))
    monkeypatch.setenv("AIMC_LSH_NOTEBOOK_OUT", str(tmp_path))
    client = NotebookClient(nbformat.read(broken, as_version=4), timeout=300, kernel_name="python3")
    with pytest.raises(Exception, match="exit status 2"):
        client.execute()
