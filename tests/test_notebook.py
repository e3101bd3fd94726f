"""notebooks/explore.ipynb: committed without outputs, and runs top to bottom in a real Jupyter kernel
on the synthetic MNIST and the checkpoints of the quick chain (the `chain` fixture of conftest.py)."""
import os
import sys
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from conftest import REPO

NOTEBOOK = REPO / "notebooks" / "explore.ipynb"


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    assert nb.metadata.kernelspec.name == "python3"


def test_notebook_runs_on_the_quick_chain(chain, mnist_root, tmp_path):
    out, _ = chain
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.prefix)"))  # which python ran it
    # A "python3" kernel spec pinned to this interpreter (the venv's), in a folder of its own, so that
    # no kernel spec installed elsewhere (user or system Jupyter) can be picked instead.
    kernels = tmp_path / "kernels"
    write_kernel_spec(kernels / "python3")
    km = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    assert km.kernel_spec.argv[0] == sys.executable
    env = os.environ | {"MNIST_ROOT": str(mnist_root), "EX2_OUT_DIR": str(out)}
    client = NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute(env=env)  # raises CellExecutionError (with the traceback) if any cell fails

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"checkpoints: {out.resolve() / 'checkpoints'}" in text and f"data: {mnist_root.resolve()}" in text
    assert "100 test images, latent size d = 12" in text
    figures = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(figures) == 3  # reconstructions, latent walk, confusion matrix
    kernel_prefix = Path(text.rstrip().splitlines()[-1])
    assert kernel_prefix.resolve() == Path(sys.prefix).resolve()  # the kernel ran in this (the venv's) python


@pytest.mark.parametrize("cwd", ["notebooks", "."])
def test_notebook_finds_the_repo_root_from_where_it_is_started(cwd, monkeypatch):
    """The set-up cell's repo-root search, run outside a kernel from the two usual working folders."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    setup = next(c.source for c in nb.cells if c.cell_type == "code" and "REPO = " in c.source)
    line = next(l for l in setup.splitlines() if l.startswith("REPO = "))
    monkeypatch.chdir(REPO / cwd)
    scope = {}
    exec("from pathlib import Path\n" + line, scope)
    assert scope["REPO"] == REPO
