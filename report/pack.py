"""Pack the submission ex2_<ID1>_<ID2>.zip: the code, ex2.pdf (names filled in) and the README, nothing else.

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
from train import atomic_path, run_main  # noqa: E402

CODE = ("*.py", "requirements.txt", "tasks/*.py", "report/*.py", "report/*.typ", "tests/*.py")


def code_files() -> list[Path]:
    files = {f for pattern in CODE for f in REPO.glob(pattern) if f.is_file()}
    return sorted(files)


def user_id(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", text):
        raise argparse.ArgumentTypeError(f"a user name of letters, digits, '.', '_' or '-', got {text!r}")
    return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("id1", type=user_id, help="first student's user name")
    p.add_argument("id2", type=user_id, help="second student's user name")
    p.add_argument("--name1", default="Name One", help="first student's name (default: Name One)")
    p.add_argument("--name2", default="Name Two", help="second student's name (default: Name Two)")
    p.add_argument("--out", default=None, help="folder to write the zip to (default: the repo root)")
    args = p.parse_args(argv)
    zip_path = Path(args.out or REPO).resolve() / f"ex2_{args.id1}_{args.id2}.zip"
    names = f"{args.name1} ({args.id1}), {args.name2} ({args.id2})"
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "ex2.pdf"
        build_pdf(REPO, pdf, names)
        with atomic_path(zip_path) as tmp_zip, zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as z:
            for f in code_files():
                z.write(f, f.relative_to(REPO).as_posix())
            z.write(pdf, "ex2.pdf")
            z.write(REPO / "README.md", "README.md")
    print(f"wrote {zip_path}")


if __name__ == "__main__":
    run_main(main)
