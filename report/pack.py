"""Pack the submission ex2_<ID1>_<ID2>.zip: the code, ex2.pdf (names filled in), the figures and results the
report is built from, and a README that opens with both names and cse usernames; no data or checkpoints.

    python report/pack.py alovelace aturing --name1 "Ada Lovelace" --name2 "Alan Turing"
"""
import argparse
import re
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "report"))

from build import build_pdf  # noqa: E402
from train import Parser, UserError, run, write_whole  # noqa: E402

CODE = ("*.py", "requirements.txt", "tasks/*.py", "extras/*.py", "report/*.py", "report/*.typ", "tests/*.py",
        "notebooks/*.ipynb")
FIGURES = ("figures/*.png", "results/*.json")  # what ex2.pdf is built from and refers to (small)


def code_files() -> list[Path]:
    return sorted({f for pattern in CODE + FIGURES for f in REPO.glob(pattern) if f.is_file()})


def user_id(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", text):
        raise argparse.ArgumentTypeError(f"expected a user name of letters, digits, '.', '_' or '-' that starts "
                                         f"with a letter or digit, got {text!r}")
    return text


def person_name(text: str) -> str:
    text = " ".join(text.split())
    if not text or not text.isprintable():
        raise argparse.ArgumentTypeError(f"a name on one line, got {text!r}")
    return text


def submission_readme(people: list[tuple[str, str]]) -> str:
    """The zip's README: both names and cse usernames first, then the repository's README."""
    head = "# Exercise 2 — submission\n\n" + "".join(f"- {n} (cse username: {u})\n" for n, u in people)
    return head + "\n---\n\n" + (REPO / "README.md").read_text()


def main(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("id1", type=user_id, help="first student's cse user name")
    p.add_argument("id2", type=user_id, help="second student's cse user name")
    p.add_argument("--name1", type=person_name, default="Name One", help="first student's name (default: Name One)")
    p.add_argument("--name2", type=person_name, default="Name Two", help="second student's name (default: Name Two)")
    p.add_argument("--out", default=None, help="folder to write the zip to (default: the repo root)")
    args = p.parse_args(argv)
    out = Path(args.out or REPO).expanduser().resolve()
    if not out.is_dir():
        raise UserError(f"--out {out} is {'a file' if out.exists() else 'missing'}; pass an existing folder")
    zip_path = out / f"ex2_{args.id1}_{args.id2}.zip"
    people = [(args.name1, args.id1), (args.name2, args.id2)]
    readme = submission_readme(people)
    members = {f.relative_to(REPO).as_posix(): f for f in code_files()}
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "ex2.pdf"
        build_pdf(REPO, pdf, ", ".join(f"{n} ({u})" for n, u in people))

        def write_zip(path):
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr("README.md", readme)
                z.write(pdf, "ex2.pdf")
                for name, f in members.items():
                    z.write(f, name)
        try:
            write_whole(zip_path, write_zip)
        except OSError as exc:
            raise UserError(f"cannot write {zip_path} ({exc.strerror}); pass an --out folder you can write to") from None
    print(f"wrote {zip_path}")


if __name__ == "__main__":
    run(main)
