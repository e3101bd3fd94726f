"""Build ex2.pdf from report/ex2.typ, results/*.json and figures/, and refresh the README's results table.

    python report/build.py                       # ex2.pdf at the repo root + README table
    python report/build.py --out-dir runs/quick  # the report of a scratch run, into runs/quick/ex2.pdf
"""
import json
import os
import re
import sys
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models import MLP, Decoder, Encoder, count_parameters  # noqa: E402
from train import Parser, UserError, load_results, run, write_whole  # noqa: E402

TASKS = ("task1_autoencoder", "task2_classifier", "task3_classifier_decoding", "task4_few_shot", "task5_transfer_learning")
EXTRAS = ("latent_sweep", "q2_equivariance", "semi_supervised")
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def read(results: Path, name: str) -> dict:
    folder = "extras" if name in EXTRAS else "tasks"
    return load_results(results / f"{name}.json", f"run python {folder}/{name}.py (or python reproduce.py) first")


def write_architecture(results: Path) -> None:
    """Parameter counts of the modules as the tasks build them (read by the report)."""
    enc, mlp = Encoder(read(results, "task1_autoencoder")["config"]["latent_dim"]), MLP()
    text = json.dumps({
        "encoder": {"latent_dim": enc.latent_dim, "channels": list(enc.channels), "parameters": count_parameters(enc)},
        "decoder": {"parameters": count_parameters(Decoder(enc.latent_dim))},
        "mlp": {"hidden": mlp.hidden, "dropout": mlp.net[2].p, "parameters": count_parameters(mlp)},
        "classifier_parameters": count_parameters(enc) + count_parameters(mlp)}, indent=2)
    write_whole(results / "architecture.json", lambda tmp: tmp.write_text(text + "\n"))


def results_table(results: Path) -> str:
    """The README's table of headline numbers, generated from results/*.json."""
    t1, t2, t3, t4, t5 = (read(results, n)["final"] for n in TASKS)
    pm = lambda r: f"{r['test_accuracy_mean']:.2%} ± {r['test_accuracy_std']:.2%}"  # noqa: E731
    rows = [("Task 1: autoencoder, d = 12, test L1", f"{t1['test_l1']:.4f}"),
            ("Task 2: classifier, test accuracy", f"{t2['test_accuracy']:.2%}"),
            ("Task 3: frozen classifier encoder + new decoder, test L1", f"{t3['test_l1']:.4f}"),
            ("Task 3 control: frozen AE encoder + new decoder, test L1", f"{t3['control_ae_encoder_test_l1']:.4f}"),
            ("Task 3 objective control: classifier trained like Task 1's AE, frozen + new decoder, test L1",
             f"{t3['objective_control']['decoder_test_l1']:.4f}"),
            ("Task 4: 100 labels, random init, plain recipe", pm(t4["recipes"]["plain"])),
            (f"Task 4: the recipe chosen on validation ({t4['best']})", pm(t4["recipes"][t4["best"]])),
            ("Task 5: 100 labels, AE encoder fine-tuned, plain recipe", pm(t5["recipes"]["fine-tune"])),
            (f"Task 5: the recipe chosen on validation ({t5['best']})", pm(t5["recipes"][t5["best"]]))]
    if (results / "semi_supervised.json").is_file():  # beyond the exercise: extras/semi_supervised.py
        semi = read(results, "semi_supervised")["final"]
        rows.append(("Beyond: 100 labels + 49,900 unlabelled images, pseudo-labelling from the AE encoder",
                     pm(semi["autoencoder"])))
    gains = "; ".join(f"{k} {100 * g['test_accuracy_difference']:+.1f} ± {100 * g['standard_error']:.1f} points"
                      for k, g in t5["pretraining_gain"].items())
    seconds = {n: read(results, n)["environment"]["seconds"] for n in TASKS}
    return "\n".join(["| result | test |", "| --- | --- |"] + [f"| {a} | {b} |" for a, b in rows] + [
        "", f"What pre-training changes (Task 5 minus Task 4 under the same recipe, ± standard error over seeds): {gains}.",
        "", "Wall clock per script: " + ", ".join(f"{n} {s / 60:.1f} min" for n, s in seconds.items())
        + f"; {sum(seconds.values()) / 60:.1f} min in all."])


def update_readme(results: Path) -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise UserError(f"{readme} lacks the {README_START} ... {README_END} markers of the results table; put them back")
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    write_whole(readme, lambda tmp: tmp.write_text(text[:start] + "\n" + results_table(results) + "\n" + text[end:]))


def build_pdf(out_dir: Path, output: Path, names: str | None = None) -> None:
    import typst

    results, figures = out_dir / "results", out_dir / "figures"
    stamps = [datetime.fromisoformat(read(results, n)["environment"]["date"]).timestamp() for n in TASKS]
    write_architecture(results)
    source = REPO / "report" / "ex2.typ"
    root = Path(os.path.commonpath([source, results, figures]))  # Typst reads files only below its root
    inputs = {"results": "/" + results.relative_to(root).as_posix(), "figures": "/" + figures.relative_to(root).as_posix(),
              "extras": ",".join(n for n in EXTRAS if (results / f"{n}.json").is_file())}
    if names:
        inputs["names"] = names
    if (results / "tuning.json").is_file():  # the validation study (tune.py, not part of reproduce.py)
        inputs["tuning"] = "yes"
    missing = [f for f in re.findall(r'([\w-]+\.png)"', source.read_text()) if not (figures / f).is_file()
               and not any(f.startswith(e) for e in EXTRAS + ("tuning",))]
    if missing:
        raise UserError(f"{figures / missing[0]} not found (ex2.typ shows it); run python reproduce.py first")
    try:  # the PDF's date is the newest run's, never the clock: unchanged inputs give identical bytes
        pdf = typst.compile(str(source), root=str(root), sys_inputs=inputs, timestamp=int(max(stamps)))
    except typst.TypstError as exc:
        where = re.search(r"(\S+\.typ):(\d+):\d+", getattr(exc, "diagnostic", "") or "")
        raise UserError(f"{source} did not compile{f' (line {where[2]})' if where else ''}: "
                        f"{str(exc).splitlines()[0]}") from None
    try:
        write_whole(output, lambda tmp: tmp.write_bytes(pdf))
    except OSError as exc:
        raise UserError(f"--output {output} cannot be written ({exc.strerror}); pass the path of the PDF") from None
    print(f"wrote {output}")


def main(argv=None):
    p = Parser(description="Build ex2.pdf (and the README's results table) from the results.")
    p.add_argument("--out-dir", default=None, help="folder with results/ and figures/ (default: the repository)")
    p.add_argument("--output", default=None, help="the PDF to write (default: <out-dir>/ex2.pdf)")
    p.add_argument("--names", default=None, help='the title block, e.g. "Ada Lovelace (alovelace), Alan Turing '
                                                 '(aturing)" (default: a note that report/pack.py fills it in)')
    args = p.parse_args(argv)
    if args.out_dir is not None and not args.out_dir.strip():
        raise UserError("--out-dir is empty (an unset shell variable?); pass a folder")
    out_dir = Path(args.out_dir).resolve() if args.out_dir else REPO
    build_pdf(out_dir, Path(args.output).resolve() if args.output else out_dir / "ex2.pdf", args.names)
    if out_dir == REPO:
        update_readme(out_dir / "results")
        print("updated the results table in README.md")


if __name__ == "__main__":
    run(main)
