import json
import re
import sys
import time
import zipfile
from datetime import datetime, timezone

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "report"))
from build import README_END, README_START, TASKS, build_pdf, results_table  # noqa: E402

HAVE_RESULTS = all((REPO / "results" / f"{t}.json").exists() for t in TASKS)
needs_results = pytest.mark.skipif(not HAVE_RESULTS, reason="the full runs' results are not committed yet")

PEOPLE = (("Ada Lovelace", "alovelace"), ("Alan Turing", "aturing"))


# --- fractions of partial derivatives in the Typst math --------------------------------------------------------------
# In Typst math `/` takes only the nearest atom on each side, so `partial y / partial x` renders as
# ∂ (y/∂) x. A fraction of partials needs parentheses, `(partial y)/(partial x)`, or `frac(..., ...)`.
_PARTIAL = r"(?<![\w.])(?:partial|diff)(?![A-Za-z0-9])"  # `diff` is Typst's other name for ∂
_ATTACH = r"(?:\s*[_^]\s*(?:\([^()$]*\)|[A-Za-z0-9.']+))"  # _i, ^2, _(j k)
GARBLED_FRACTION = re.compile(
    _PARTIAL + _ATTACH + r"*\s*(?:\([^()$]*\)|[A-Za-z0-9.']+)" + _ATTACH + r"*(?:\s*\[[^\]$]*\])?\s*/"  # ∂y_i[n] /
    + "|/\\s*" + _PARTIAL)  # / ∂x


def math_segments(source: str):
    """(line, text) of every $...$ in a Typst source; comments, raw text and \\$ blanked out first."""
    blank = lambda m: re.sub(r"[^\n]", " ", m.group())  # noqa: E731  (keeps offsets and line numbers)
    source = re.sub(r"`[^`]*`|(?<![:\\])//[^\n]*|/\*.*?\*/|\\\$", blank, source, flags=re.S)
    for m in re.finditer(r"\$([^$]*)\$", source):
        yield source.count("\n", 0, m.start()) + 1, m.group(1)


def garbled_fractions(source: str) -> list[str]:
    return [f"line {line}: ${math.strip()}$" for line, math in math_segments(source)
            if GARBLED_FRACTION.search(math)]


@pytest.mark.parametrize("math, garbled", [
    ("(partial y)/(partial x)", False),
    ("(partial L)/(partial W) = g x^T", False),
    ("(partial y_i)/(partial W_(j k)) = delta_(i j) x_k", False),
    ("frac(partial y, partial x)", False),
    ("partial_x f", False),
    ("x / 2 + partial y", False),
    ("partial y / partial x", True),
    ("partial L / partial W", True),
    ("partial y_i / partial x_j = W_(i j)", True),
    ("partial y_i / partial W_(j k)", True),
    ("partial y_o [n] / (partial h_(o' c)[k])", True),
    ("partial^2 f / (partial x^2)", True),
    ("(partial y)/partial x", True),
    ("partial y/(partial x)", True),
    ("diff f / diff x", True),
])
def test_garbled_fraction_regex(math, garbled):
    assert bool(GARBLED_FRACTION.search(math)) == garbled
    assert bool(garbled_fractions(f"Text with a formula ${math}$, // a comment $partial y / partial x$\n")) == garbled


def test_report_math_has_no_unparenthesised_partial_fractions():
    sources = sorted((REPO / "report").glob("*.typ"))
    assert REPO / "report" / "ex2.typ" in sources
    bad = {p.name: garbled_fractions(p.read_text()) for p in sources}
    bad = {name: found for name, found in bad.items() if found}
    assert not bad, "write (partial y)/(partial x), not partial y / partial x:\n" + "\n".join(
        f"{name} {hit}" for name, found in bad.items() for hit in found)


# --- README table -----------------------------------------------------------------------------------------------------
@needs_results
def test_readme_table_matches_results():
    text = (REPO / "README.md").read_text()
    table = text[text.index(README_START) + len(README_START):text.index(README_END)].strip()
    assert table == results_table(REPO / "results")


# --- the submission zip -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    if not HAVE_RESULTS:
        pytest.skip("the full runs' results are not committed yet")
    import pack

    out = tmp_path_factory.mktemp("pack")
    (id1, id2) = (PEOPLE[0][1], PEOPLE[1][1])
    pack.main([id1, id2, "--name1", PEOPLE[0][0], "--name2", PEOPLE[1][0], "--out", str(out)])
    zips = sorted(out.iterdir())
    assert [z.name for z in zips] == [f"ex2_{id1}_{id2}.zip"]  # the name the submission rules ask for
    with zipfile.ZipFile(zips[0]) as z:
        assert z.testzip() is None
        return {"names": z.namelist(), "readme": z.read("README.md").decode(), "pdf": z.read("ex2.pdf"),
                "size": sum(i.file_size for i in z.infolist())}


def markdown_links(text: str) -> list[str]:
    """Relative targets of the links and images of a README (fenced code and code spans skipped)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = re.findall(r"\]\(\s*<?([^)\s>]+)", text) + re.findall(r"(?m)^\s*\[[^\]]+\]:\s*<?([^\s>]+)", text)
    targets += re.findall(r"(?:src|href)\s*=\s*[\"']([^\"']+)", text)
    return [t.split("#")[0].removeprefix("./") for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


def test_markdown_links_finds_links_and_images():
    text = ("See [`ex2.pdf`](ex2.pdf) and ![a](figures/a.png \"t\") and [b](./b.md#x), [web](https://x.org), [c][r]\n"
            "[r]: results/c.json\n<img src=\"figures/d.png\">\n```\n[not](code.py)\n```\n`[nor](this.py)`\n")
    assert markdown_links(text) == ["ex2.pdf", "figures/a.png", "b.md", "results/c.json", "figures/d.png"]


def test_pack_readme_opens_with_names_and_usernames(packed):
    head = [line for line in packed["readme"].splitlines() if line.strip()][:4]
    for name, user in PEOPLE:
        assert any(name in line and user in line for line in head), (name, user, head)
    assert "cse username" in "\n".join(head)
    assert (REPO / "README.md").read_text().splitlines()[0] in packed["readme"]  # then the repo's README


def test_pack_readme_links_only_files_in_the_zip(packed):
    links = markdown_links(packed["readme"])
    assert "ex2.pdf" in links
    missing = sorted(set(links) - set(packed["names"]))
    assert not missing, f"the zip's README links files the zip lacks: {missing}"


def test_pack_holds_code_pdf_figures_and_no_data(packed):
    names = set(packed["names"])
    assert {"ex2.pdf", "README.md", "models.py", "data.py", "train.py", "reproduce.py", "requirements.txt",
            "report/ex2.typ", "report/build.py", "report/pack.py", "tests/conftest.py"} <= names
    assert {f"tasks/{t}.py" for t in TASKS} <= names
    for pattern in ("*.py", "tasks/*.py", "extras/*.py", "report/*.py", "report/*.typ", "tests/*.py", "notebooks/*.ipynb",
                    "figures/*.png", "results/*.json"):
        assert {f.relative_to(REPO).as_posix() for f in REPO.glob(pattern)} <= names, pattern
    forbidden = r"(^|/)(\.venv|\.git|data|runs|checkpoints|__pycache__|\.pytest_cache|\.ipynb_checkpoints)/" \
                r"|ubyte|\.(pt|pth|ckpt|pyc|zip|gz)$"
    assert not [n for n in names if re.search(forbidden, n)]
    assert packed["pdf"][:5] == b"%PDF-" and packed["pdf"].rstrip().endswith(b"%%EOF")
    assert packed["size"] < 20e6


def pdf_text(pdf: bytes) -> str:
    import io

    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_the_zips_pdf_carries_the_given_names_and_at_most_12_pages(packed):
    import io

    from pypdf import PdfReader

    text = " ".join(pdf_text(packed["pdf"]).split())
    for name, user in PEOPLE:
        assert f"{name} ({user})" in text
    assert "Name One" not in text and "username1" not in text
    assert len(PdfReader(io.BytesIO(packed["pdf"])).pages) <= 12


RECORD_KEEPING = [r": (yes|no)(?=[.;,)*]|$)", r"\btargets?\b", r"stretch goal", r"\bcommitted\b", r"\btorch \d", r"\bCUDA\b",
                  r"\bfinal\.\w+"]


def record_keeping(text: str, keys: set[str]) -> list[str]:
    """Words of record-keeping in a report's text: checks answered "yes", targets, versions, and the results
    files' keys that contain an underscore (e.g. a JSON key quoted as prose)."""
    flat = " ".join(text.split())
    found = [m.group() for w in RECORD_KEEPING for m in [re.search(w, flat, flags=re.I)] if m]
    return found + sorted(k for k in keys if re.search(rf"(?<![\w/]){re.escape(k)}(?![\w/])", flat))


def json_keys(obj) -> set[str]:
    if isinstance(obj, dict):
        return {k for k in obj if "_" in k} | set().union(*(json_keys(v) for v in obj.values()))
    if isinstance(obj, list):
        return set().union(set(), *(json_keys(v) for v in obj))
    return set()


def test_record_keeping_finds_planted_words():
    keys = {"test_accuracy_mean", "best_test_loss_epoch"}
    assert record_keeping("The encoder is unchanged: yes. Targets met.", keys) == [": yes", "Targets"]
    assert record_keeping("chose final.best by test_accuracy_mean", keys) == ["final.best", "test_accuracy_mean"]
    assert record_keeping("Settings: not from the study; torch 2.14", keys) == ["torch 2"]
    assert record_keeping("A clean sentence about the test accuracy.", keys) == []


def test_the_pdf_has_no_record_keeping(packed):
    keys = set().union(*(json_keys(json.loads(f.read_text())) for f in (REPO / "results").glob("*.json")))
    assert record_keeping(pdf_text(packed["pdf"]), keys) == []


@pytest.mark.parametrize("args", [["a b", "c"], ["a", "c/d"], ["a", ".."], ["a", "c", "--name1", "  "]])
def test_pack_rejects_bad_user_names_in_one_line(args, tmp_path, capsys):
    import pack  # in-process: argparse rejects the arguments before anything is built
    with pytest.raises(SystemExit) as exit_:
        pack.main([*args, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "name" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def _one_line_error(main, capsys) -> str:
    from train import run

    with pytest.raises(SystemExit) as info:
        run(main)
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_pack_out_that_is_a_file_ends_in_one_line(tmp_path, capsys):
    import pack

    f = tmp_path / "f"
    f.write_text("mine")
    assert "--out" in _one_line_error(lambda: pack.main(["a", "b", "--out", str(f)]), capsys) and f.read_text() == "mine"


@pytest.fixture
def results_copy(chain, tmp_path):
    """A copy of the quick chain's results and figures, to damage."""
    import shutil

    for kind in ("results", "figures"):
        shutil.copytree(chain[0] / kind, tmp_path / "o" / kind)
    return tmp_path / "o"


def test_build_names_a_missing_results_file_and_the_script_that_writes_it(results_copy, capsys):
    import build

    path = results_copy / "results" / "task2_classifier.json"
    path.unlink()
    line = _one_line_error(lambda: build.main(["--out-dir", str(results_copy)]), capsys)
    assert f"{path} is missing" in line and "python tasks/task2_classifier.py" in line


def test_build_names_a_missing_figure(results_copy, capsys):
    import build

    (results_copy / "figures" / "task1_autoencoder_reconstructions.png").unlink()
    line = _one_line_error(lambda: build.main(["--out-dir", str(results_copy)]), capsys)
    assert f"{results_copy / 'figures' / 'task1_autoencoder_reconstructions.png'} not found" in line


@pytest.mark.parametrize("output", ["folder", "/proc/ex2.pdf"])
def test_build_output_that_cannot_be_written_ends_in_one_line(results_copy, output, capsys):
    import build

    target = results_copy if output == "folder" else output
    line = _one_line_error(lambda: build.main(["--out-dir", str(results_copy), "--output", str(target)]), capsys)
    assert str(target) in line


# --- a byte-reproducible PDF ------------------------------------------------------------------------------------------
@needs_results
def test_pdf_build_is_byte_reproducible(tmp_path, packed):
    start = time.monotonic()
    build_pdf(REPO, tmp_path / "a.pdf")
    time.sleep(max(0.0, 1.5 - (time.monotonic() - start)))  # a clock-derived date would differ by now
    build_pdf(REPO, tmp_path / "b.pdf")
    a, b = (tmp_path / "a.pdf").read_bytes(), (tmp_path / "b.pdf").read_bytes()
    assert a == b, "two builds from the same inputs differ (a date or ID from the clock?)"
    # the date in the PDF is the newest run's, not the build's
    runs = [REPO / "results" / f"{n}.json" for n in TASKS if (REPO / "results" / f"{n}.json").is_file()]
    newest = max(datetime.fromisoformat(json.loads(f.read_text())["environment"]["date"]) for f in runs)
    assert f"/CreationDate(D:{newest.astimezone(timezone.utc):%Y%m%d%H%M%S}".encode() in a
    assert packed["pdf"] != a  # the zip's PDF carries the names, not the placeholders


@needs_results
def test_the_committed_report_puts_the_answers_first_within_its_page_budget():
    """Catches a report that grows: Tasks 1-5 within the first 6 pages (the theory starts on page 7 at the
    latest), an appendix of at most 3 pages, at most 12 pages in all."""
    from pypdf import PdfReader

    pages = [page.extract_text() for page in PdfReader(REPO / "ex2.pdf").pages]
    theory = next(i for i, text in enumerate(pages) if re.search(r"^\s*6 Theory", text, re.M))
    appendix = next(i for i, text in enumerate(pages) if re.search(r"^\s*A Appendix", text, re.M))
    assert theory <= 6 and len(pages) - appendix <= 3 and len(pages) <= 12
