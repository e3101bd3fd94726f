import re
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "report"))
from build import README_END, README_START, TASKS, results_table  # noqa: E402

HAVE_RESULTS = all((REPO / "results" / f"{t}.json").exists() for t in TASKS)


@pytest.mark.skipif(not HAVE_RESULTS, reason="the full runs' results are not committed yet")
def test_readme_table_matches_results():
    text = (REPO / "README.md").read_text()
    table = text[text.index(README_START) + len(README_START):text.index(README_END)].strip()
    assert table == results_table(REPO / "results")


@pytest.mark.skipif(not HAVE_RESULTS, reason="the full runs' results are not committed yet")
def test_pack_holds_code_report_and_readme_only(tmp_path):
    subprocess.run([sys.executable, str(REPO / "report" / "pack.py"), "ada", "alan", "--name1", "Ada L",
                    "--name2", "Alan T", "--out", str(tmp_path)], cwd=REPO, check=True, capture_output=True)
    with zipfile.ZipFile(tmp_path / "ex2_ada_alan.zip") as z:
        names = z.namelist()
        pdf = z.read("ex2.pdf")
    assert {"ex2.pdf", "README.md", "models.py", "data.py", "train.py", "requirements.txt",
            "tasks/task1_autoencoder.py", "tasks/task5_transfer_learning.py", "report/ex2.typ"} <= set(names)
    assert not [n for n in names if re.search(r"\.venv|__pycache__|ubyte|\.pt$|\.png$|\.json$|^data/", n)]
    assert pdf[:5] == b"%PDF-"


def test_pack_rejects_bad_user_names(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "report" / "pack.py"), "a b", "c", "--out", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and "user name" in out.stderr and not list(tmp_path.iterdir())
