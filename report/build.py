"""Build ex2.pdf from report/ex2.typ, results/*.json and figures/, and refresh the README's results table.

    python report/build.py                       # ex2.pdf at the repo root + README table
    python report/build.py --out-dir runs/quick  # report of a scratch run, into runs/quick/ex2.pdf
"""
import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cli import Parser  # noqa: E402
from models import MLP, Decoder, Encoder, count_parameters  # noqa: E402
from runs import UserError, locked, read_json, run_main, write_json  # noqa: E402

from reproduce import TASKS  # noqa: E402  (the task scripts, in order)

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def write_architecture(results: Path) -> None:
    """Parameter counts of the modules as Tasks 1 and 2 build them (read by the report)."""
    t1, t2 = (read_json(results / f"{n}.json")["architecture"] for n in ("task1_autoencoder", "task2_classifier"))
    enc, mlp = Encoder(t1["latent_dim"], tuple(t1["channels"])), MLP(t2["latent_dim"], t2["hidden"])
    write_json(results / "architecture.json", {
        "encoder": {"latent_dim": enc.latent_dim, "channels": list(enc.channels), "parameters": count_parameters(enc)},
        "decoder": {"parameters": count_parameters(Decoder(enc.latent_dim, enc.channels))},
        "mlp": {"hidden": mlp.hidden, "dropout": mlp.net[2].p, "parameters": count_parameters(mlp)},
        "classifier_parameters": count_parameters(Encoder(t2["latent_dim"], tuple(t2["channels"]))) +
                                 count_parameters(mlp)})


def results_table(results: Path) -> str:
    """The README's table of headline numbers, generated from results/*.json."""
    runs = {name: read_json(results / f"{name}.json") for name in TASKS}
    t1, t2, t3, _, t4, t5 = (runs[n]["final"] for n in TASKS)
    pm = lambda r: f"{r['test_accuracy_mean']:.2%} ± {r['test_accuracy_std']:.2%}"  # noqa: E731
    met = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    per_seed = lambda r: f"{r['train_seconds_mean']:.0f} s per seed"  # noqa: E731
    b4, b5 = t4["best"]["recipe"], t5["best"]["recipe"]
    r4, r5 = t4["recipes"][b4], t5["recipes"][b5]
    rows = [
        ("Task 1: autoencoder, d = 12, test L1", f"{t1['test_l1']:.4f}", f"<= 0.0265: {met(t1['test_l1'] <= 0.0265)}",
         f"{t1['train_seconds']:.0f} s"),
        ("Task 2: classifier, test accuracy", f"{t2['test_accuracy']:.2%}",
         f">= 99.55%: {met(t2['test_accuracy'] >= 0.9955)}", f"{t2['train_seconds']:.0f} s"),
        ("Task 3: frozen classifier encoder + new decoder, test L1", f"{t3['test_l1']:.4f}",
         f"(Task 1: {t3['task1_ae_test_l1']:.4f})", f"{t3['train_seconds']:.0f} s"),
        ("Task 3 control: frozen AE encoder + new decoder, test L1", f"{t3['control_ae_encoder_test_l1']:.4f}",
         "(same training as Task 3)", ""),
        ("Task 4: 100 labels, random init, plain set-up", pm(t4), f">= 65%: {met(t4['test_accuracy_mean'] >= 0.65)}",
         per_seed(t4)),
        (f"Task 4: recipe chosen on validation ({b4})", pm(r4), f">= 90%: {met(r4['test_accuracy_mean'] >= 0.90)}",
         per_seed(r4)),
        ("Task 5: 100 labels, AE encoder fine-tuned, Task 4's set-up", pm(t5),
         f">= 85%: {met(t5['test_accuracy_mean'] >= 0.85)}", per_seed(t5)),
        (f"Task 5: recipe chosen on validation ({b5})", pm(r5), f">= 91%: {met(r5['test_accuracy_mean'] >= 0.91)}",
         per_seed(r5)),
    ]
    wall = {n: runs[n]["environment"]["wall_seconds"] for n in TASKS}
    gains = "; ".join(f"{k} {100 * g['test_accuracy_difference']:+.1f} ± {100 * g['standard_error']:.1f} points"
                      for k, g in t5["pretraining_gain"].items())
    return "\n".join(["| result | measured (test) | target | training time |", "| --- | --- | --- | --- |"]
                     + [f"| {' | '.join(row)} |" for row in rows] + [
        "", f"What pre-training adds (Task 5 minus Task 4, same recipe, ± standard error over seeds): {gains}.", "",
        f"Main AE run + classifier run: {t1['train_seconds'] + t2['train_seconds']:.0f} s of training. Whole scripts, "
        f"wall clock: " + ", ".join(f"{n} {w:.0f} s" for n, w in wall.items()) + f", together "
        f"{sum(wall.values()) / 60:.1f} min (target for reproduce.py: 25 min, {met(sum(wall.values()) <= 25 * 60)} "
        f"on this machine)."])


def update_readme(results: Path) -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    readme.write_text(text[:start] + "\n" + results_table(results) + "\n" + text[end:])


def check_one_set(results: Path) -> None:
    """Every results file exists, and each one built on another task's outputs names the run of
    that task's results file (so a rerun of Task 1 alone cannot leave Task 3's stale numbers)."""
    runs = {}
    for name in TASKS:
        if not (results / f"{name}.json").is_file():
            raise UserError(f"{results / name}.json not found; run tasks/{name}.py (or python reproduce.py) first")
        runs[name] = read_json(results / f"{name}.json")
    for name, res in runs.items():
        for upstream, run_id in res.get("prerequisites", {}).items():
            if upstream in runs and runs[upstream].get("run_id") != run_id:
                raise UserError(f"{results / name}.json was computed from another run of {upstream} than "
                                f"{results / upstream}.json; rerun tasks/{name}.py (or python reproduce.py)")


def build_pdf(out_dir: Path, output: Path, names: str | None = None) -> None:
    import typst

    results, figures = out_dir / "results", out_dir / "figures"
    check_one_set(results)
    write_architecture(results)
    source = REPO / "report" / "ex2.typ"
    root = Path(os.path.commonpath([source, results, figures]))  # Typst reads files only below its root
    inputs = {"results": "/" + results.relative_to(root).as_posix(), "figures": "/" + figures.relative_to(root).as_posix()}
    if names:
        inputs["names"] = names
    tuning = results / "tuning.json"  # the validation study's rule, written by tasks/tune.py (not by reproduce.py)
    if tuning.is_file():
        inputs["tolerance"] = json.dumps(read_json(tuning)["tolerance"])
    # The PDF's creation date (and the document ID Typst derives from it) is the newest run's date, never the
    # clock, so rebuilding from unchanged inputs gives identical bytes.
    from datetime import datetime
    stamp = max(int(datetime.fromisoformat(read_json(results / f"{n}.json")["environment"]["date"]).timestamp())
                for n in TASKS)
    missing = [f for f in re.findall(r'([\w-]+\.png)"', source.read_text()) if not (figures / f).is_file()]
    if missing:
        raise UserError(f"{figures / missing[0]} not found (ex2.typ shows it); run the task that draws it "
                        f"(or python reproduce.py)")
    try:
        pdf = typst.compile(str(source), root=str(root), sys_inputs=inputs, timestamp=stamp)
    except typst.TypstError as exc:
        where = re.search(r"(\S+\.typ):(\d+):\d+", getattr(exc, "diagnostic", "") or "")
        at = f" ({where[1]}, line {where[2]})" if where else ""
        raise UserError(f"{source} did not compile{at}: {str(exc).splitlines()[0]}") from None
    try:
        output.write_bytes(pdf)
    except OSError as exc:
        what = "a folder" if output.is_dir() else f"not writable ({exc.strerror})"
        raise UserError(f"--output {output} is {what}; pass the path of the PDF to write") from None
    print(f"wrote {output}")


def main(argv=None):
    p = Parser(description="Build ex2.pdf (and the README's results table) from the results.")
    p.add_argument("--out-dir", default=None, help="folder with results/ and figures/ (default: the repo root)")
    p.add_argument("--output", default=None, help="the PDF to write (default: <out-dir>/ex2.pdf)")
    p.add_argument("--names", default=None,
                   help='the title block, e.g. "Ada Lovelace (alovelace), Alan Turing (aturing)" '
                        "(default: placeholders)")
    args = p.parse_args(argv)
    out_dir = Path(args.out_dir).resolve() if args.out_dir else REPO
    with locked(out_dir):  # no task may commit into this set while the report reads it
        build_pdf(out_dir, Path(args.output).resolve() if args.output else out_dir / "ex2.pdf", args.names)
        if out_dir == REPO:
            update_readme(out_dir / "results")
            print("updated the results table in README.md")


if __name__ == "__main__":
    run_main(main, "the report")
