"""One helper per kind of figure; each is written whole as a PNG.

Figures are drawn at the size the report places them (TEXT_WIDTH inches is the full text width
of ex2.pdf), so every font size below is the printed size: nothing is smaller than 9 pt.
"""
import math

import matplotlib

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from matplotlib.transforms import blended_transform_factory

from train import write_whole

TEXT_WIDTH = 6.5  # inches: A4 with 2.2 cm margins, where ex2.typ places the figures at 100%
COLORS = plt.get_cmap("tab10")
plt.rcParams.update({"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 9,
                     "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 9.5})


def _save(fig, path, rect: tuple | None = (0, 0, 1, 1)) -> None:
    """Lay the figure out (tight_layout within `rect`; None keeps the caller's layout), write it as
    a PNG and close it."""
    if rect is not None:
        fig.tight_layout(rect=rect)
    write_whole(path, lambda tmp: fig.savefig(tmp, dpi=200, format="png"))
    plt.close(fig)


def _epoch_axis(ax, epochs, nbins: int = 8) -> None:
    """Integer epoch ticks (about `nbins`) that include the last epoch; where the curves are evaluated every k >= 5
    epochs, the ticks sit on evaluated epochs (multiples of k)."""
    epochs = [int(e) for e in epochs]
    last = max(epochs)
    k = epochs[1] - epochs[0] if len(epochs) > 1 else 1
    unit = k if k >= 5 and all(e % k == 0 for e in epochs) else 1
    gap = 0.6 / nbins  # no tick so close to the last that their labels would touch
    ticks = [unit * t for t in MaxNLocator(integer=True, nbins=nbins, steps=[1, 2, 5, 10]).tick_values(1, last / unit)
             if 1 <= unit * t <= last - gap * (last - 1)]
    ax.set_xticks(sorted(set(ticks) | {last}))


def _zoom(ax, x0: float, x1: float, bottom: float = 0.2, height: float = 0.38):
    """An inset in `ax` that zooms into the epochs x0..x1 and sits above those epochs of the main axis, so that its
    epoch ticks line up with the main axis's; `bottom` and `height` are axes fractions. 3-5 y-ticks, light grid; the
    caller plots."""
    pad = 0.06 * (x1 - x0) or 0.5  # no marker on the inset's frame (0.5 epochs around a single one)
    zoom = ax.inset_axes((x0 - pad, bottom, x1 - x0 + 2 * pad, height),
                         transform=blended_transform_factory(ax.transData, ax.transAxes))
    zoom.set_xlim(x0 - pad, x1 + pad)
    zoom.yaxis.set_major_locator(MaxNLocator(nbins=4, min_n_ticks=3))
    zoom.tick_params(pad=1)
    zoom.grid(alpha=0.3)
    return zoom


def history_curves(history: list[dict], path, title: str, loss_name: str = "loss") -> None:
    """Train and test loss per epoch, on a log axis if it spans more than a factor of 10 (the first epoch's
    values would squash the later ones), and the accuracy % if the history has accuracies. "train" is the
    eval-mode pass over the first 10,000 training images that fit() records, comparable with the test pass."""
    has_acc = "test_accuracy" in history[0]
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(TEXT_WIDTH if has_acc else 3.3, 2.3), squeeze=False)
    epochs = [r["epoch"] for r in history]
    losses = [r[f"{split}_loss"] for r in history for split in ("train", "test")]
    log = max(losses) > 10 * min(losses)
    panels = [("loss", 1, loss_name + (" (log scale)" if log else ""))]
    panels += [("accuracy", 100, "accuracy %")] if has_acc else []
    late = [i for i, e in enumerate(epochs) if e >= (epochs[0] + epochs[-1]) / 2]
    for ax, (metric, scale, ylabel) in zip(axes[0], panels):
        zoom = _zoom(ax, epochs[late[0]], epochs[-1]) if metric == "accuracy" and len(late) > 1 else None  # tenths
        for split, style, ms, mfc, name in (("train", "o-", 3, None, "train (10,000 images)"),
                                            ("test", "s-", 6, "none", "test")):
            y = [scale * r[f"{split}_{metric}"] for r in history]  # test: large see-through squares around the dots
            ax.plot(epochs, y, style, ms=ms, mfc=mfc, label=name)
            if zoom is not None:
                zoom.plot([epochs[i] for i in late], [y[i] for i in late], style, ms=ms, mfc=mfc)
        ax.set(xlabel="epoch", ylabel=ylabel, title=f"{title}: {metric}" + (" (inset: zoomed)" if zoom else ""))
        ax.grid(alpha=0.3)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
        _epoch_axis(ax, epochs)
        if zoom is not None:
            zoom.set_xticks([epochs[i] for i in late] if len(late) <= 4 else [epochs[late[0]], epochs[-1]])
            zoom.margins(y=0.25)  # no marker on the inset's frame
    axes[0, 0].legend()
    if log:  # ticks at 1, 2, 3, 5 x 10^k, written as plain numbers
        ax = axes[0, 0]
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 3, 5)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    _save(fig, path)


def digit_grid(rows: dict[str, "np.ndarray"], path, per_row: int = 15, title: str | None = None,
               numbers: list[int] | None = None) -> None:
    """Blocks of labelled rows of 28x28 digits, drawn as one image: block b shows digits b*per_row ...
    of every entry of `rows`, one row per entry (2-pixel white gaps); `numbers` (e.g. the digits' test-set
    indices) are written in grey above the block's first row, unlike a digit class. At full text width a digit is about
    (TEXT_WIDTH - 1.13) / per_row inches wide (7.6 mm for 18 per row)."""
    rows = {k: np.asarray(v).reshape(-1, 28, 28) for k, v in rows.items()}
    n = len(next(iter(rows.values())))
    inch = (TEXT_WIDTH - 1.13) / (per_row * 30 - 2)  # inches per pixel
    head = round(0.22 / inch) if numbers is not None else 0  # pixels above each block, for its numbers
    block = head + 30 * len(rows)
    canvas = np.ones((block * -(-n // per_row) - 2, per_row * 30 - 2))
    fig = plt.figure(figsize=(TEXT_WIDTH, canvas.shape[0] * inch + (0.3 if title else 0.02)))
    ax = fig.add_axes((1.1 / TEXT_WIDTH, 0.01 / fig.get_figheight(), (TEXT_WIDTH - 1.13) / TEXT_WIDTH,
                       canvas.shape[0] * inch / fig.get_figheight()))
    for b, start in enumerate(range(0, n, per_row)):
        top = b * block + head
        for r, (label, imgs) in enumerate(rows.items()):
            for c, img in enumerate(imgs[start:start + per_row]):
                canvas[top + 30 * r:top + 30 * r + 28, 30 * c:30 * c + 28] = img
            ax.text(-8, top + 30 * r + 14, label, ha="right", va="center", fontsize=9)
        size = 9 if per_row <= 15 else 8.5  # 8.5 pt: three-digit numbers stay apart at 18 per row
        for c in range(min(per_row, n - start)) if numbers is not None else ():
            ax.text(30 * c + 14, top - 2, str(numbers[start + c]), ha="center", va="bottom", fontsize=size,
                    color="0.4")
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        fig.suptitle(title, y=1 - 0.05 / fig.get_figheight(), va="top")
    _save(fig, path, rect=None)


def bars(groups: dict[str, list[float]], labels: list[str], path, ylabel: str, title: str, xlabel: str) -> None:
    """Grouped bar chart: one bar per (label, group), the legend above the axes, clear of the bars."""
    x = np.arange(len(labels))
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH, 2.7))
    for i, (name, values) in enumerate(groups.items()):
        ax.bar(x + (i - (len(groups) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, labels)
    ax.set(ylabel=ylabel, xlabel=xlabel)
    ax.set_title(title, pad=18)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(groups), frameon=False)
    ax.margins(y=0.15)
    ax.grid(alpha=0.3, axis="y")
    _save(fig, path)


def _markevery(n: int, marks: int, i: int, k: int) -> tuple[int, int]:
    """About `marks` markers on a curve of n points, experiment i of k placed at other points than the others'."""
    step = max(1, n // marks)
    return i * step // k % step, step


def mean_band(rows: dict[str, dict[str, list[list[dict]]]], path, title: str | None = None) -> None:
    """One row of three panels per recipe: training loss (log axis: it falls by decades), test loss (linear: a
    rise shows) and accuracy (test: solid with markers and an inset that zooms into the second half of the epochs;
    train: thin dashed, without markers, as it sits at 100% for every experiment). Every experiment (a list of
    per-seed histories) is drawn as its mean curve and min-max band over seeds against the epoch, with its own colour
    and marker; one accuracy range in every row, one legend below all panels."""
    names = list(dict.fromkeys(name for runs in rows.values() for name in runs))  # every experiment, in order
    legend = 0.2 * math.ceil((len(names) + 1) / 2) + 0.15  # inches: two columns of entries
    top = 0.3 if title else 0  # inches for the title
    fig, axes = plt.subplots(len(rows), 3, figsize=(TEXT_WIDTH, top + 0.3 + 2.3 * len(rows) + legend), squeeze=False)
    for (recipe, runs), (ax_train, ax_test, ax_acc) in zip(rows.items(), axes):
        zoom = None
        first_test = later_test = 0.0  # the highest test loss (band included) at the first evaluation and later
        for name, histories in runs.items():
            i = names.index(name)
            style = dict(color=COLORS(i), marker="osD^v"[i], label=name)  # every other one large and hollow, so
            style |= dict(ms=6, mfc="none", zorder=3) if i % 2 else dict(ms=3.5)  # coinciding curves show both
            x = np.array([r["epoch"] for r in histories[0]])
            late = x >= x[0] + (x[-1] - x[0]) / 2
            zoom = zoom or _zoom(ax_acc, x[late][0], x[-1], bottom=0.18, height=0.36)
            panels = ((ax_train, "train_loss", 1), (ax_test, "test_loss", 1), (ax_acc, "test_accuracy", 100))
            for ax, key, scale in panels:
                y = scale * np.array([[r[key] for r in h] for h in histories])
                ax.plot(x, y.mean(0), "-", markevery=_markevery(len(x), 8, i, len(runs)), **style)
                ax.fill_between(x, y.min(0), y.max(0), color=COLORS(i), alpha=0.25, lw=0)
                if key == "test_loss":
                    first_test, later_test = max(first_test, y.max(0)[0]), max(later_test, y.max(0)[1:].max(initial=0))
                if key == "test_accuracy":
                    train = 100 * np.array([[r["train_accuracy"] for r in h] for h in histories]).mean(0)
                    ax.plot(x, train, "--", color=COLORS(i), lw=0.9)
                    zoom.plot(x[late], y.mean(0)[late], "-", markevery=_markevery(late.sum(), 4, i, len(runs)), **style)
                    zoom.fill_between(x[late], y.min(0)[late], y.max(0)[late], color=COLORS(i), alpha=0.25, lw=0)
        ax_train.set(xlabel="epoch", ylabel="cross-entropy (log scale)", title=f"{recipe}: train loss", yscale="log")
        ax_train.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"1e{round(math.log10(v))}".replace("-", "−")))
        ax_test.set(xlabel="epoch", ylabel="cross-entropy", title=f"{recipe}: test loss")
        ax_acc.set(xlabel="epoch", ylabel="accuracy %", title=f"{recipe}: accuracy")
        for ax in (ax_train, ax_test, ax_acc):
            ax.grid(alpha=0.3)
            _epoch_axis(ax, x, nbins=4)
        if 0 < 2 * later_test < first_test:  # the first evaluation would squash the rest: cut the axis above the rest
            ax_test.set_ylim(top=1.15 * later_test)
            ax_test.annotate(f"epoch {x[0]}: up to\n{first_test:.1f}, off the axis", (0.97, 0.95),
                             xycoords="axes fraction", ha="right", va="top")
        ax_acc.set_ylim(0, 103)  # one range in every row; the train curves at 100% stay inside the frame
        zoom.set_xticks([x[late][0], x[-1]])
    if title:
        fig.suptitle(title)
    handles = {h.get_label(): h for ax in axes[:, 2] for h in ax.get_legend_handles_labels()[0]}
    dashed = plt.Line2D([], [], ls="--", lw=0.9, color="grey")
    fig.legend([handles[n] for n in names] + [dashed], names + ["dashed: train accuracy"], loc="lower center", ncol=2,
               frameon=False)
    _save(fig, path, rect=(0, legend / fig.get_figheight(), 1, 1))


def distance_maps(below: tuple[str, list[list[float]]], above: tuple[str, list[list[float]]], path) -> None:
    """One 10 x 10 map of the distances between class means of two spaces, `below` the diagonal and `above` it (each
    a name and its symmetric matrix), on one colour scale; each cell shows 100 times the distance, so that two
    significant digits fit. E.g. latent codes scaled to total spread 1."""
    (name_below, d_below), (name_above, d_above) = below, above
    d_below, d_above = 100 * np.array(d_below), 100 * np.array(d_above)
    n = len(d_below)
    d = np.where(np.tri(n, k=-1, dtype=bool), d_below, d_above)
    np.fill_diagonal(d, np.nan)
    top = np.nanmax(d)
    fig, ax = plt.subplots(figsize=(3.4, 3.75), layout="constrained")
    ax.imshow(d, cmap="viridis", vmin=0, vmax=top)  # the colour only guides the eye: each cell carries its value
    for i in range(n):
        for j in range(n):
            if i != j:  # dark text on light cells, light on dark
                ax.text(j, i, f"{d[i, j]:.0f}", ha="center", va="center", fontsize=9,
                        color="black" if d[i, j] > 0.6 * top else "white")
    ax.plot([-0.5, n - 0.5], [-0.5, n - 0.5], color="black", lw=1)
    ax.set(xticks=range(n), yticks=range(n), xlabel="digit", ylabel="digit")
    ax.set_title(f"100 × distance between class means\nabove the diagonal: {name_above}\nbelow: {name_below}",
                 fontsize=9)
    ax.tick_params(length=0)
    _save(fig, path, rect=None)


def study(questions: dict[str, dict], path) -> None:
    """The validation study, one panel per question: the validation score of every value tried (the
    few-shot ones: mean +- one standard error over seeds), the chosen value filled, a cap marked "cap"."""
    fig, axes = plt.subplots(4, 4, figsize=(TEXT_WIDTH, 7.2), squeeze=False)
    for ax, (question, a) in zip(axes.flat, questions.items()):
        metric = next(k for k in a["rows"][0] if k in ("val_l1", "val_accuracy", "val_accuracy_mean"))
        scale = 1 if metric == "val_l1" else 100
        y = np.array([scale * r[metric] for r in a["rows"]])
        se = np.array([scale * r.get("val_accuracy_se", 0.0) for r in a["rows"]])
        x = np.arange(len(y))
        ax.errorbar(x, y, yerr=se if se.any() else None, fmt="o-", ms=3, color=COLORS(0), capsize=2)
        k = a["values"].index(a["chosen"])
        ax.plot(x[k], y[k], "o", ms=7, mfc="none", mec=COLORS(3), mew=1.5)
        ax.set_xticks(x, ["/".join(map(str, v)) if isinstance(v, list) else f"{v:g}" for v in a["values"]],
                      rotation=40)
        ax.set_title(question.replace("task", "Task ").replace(".", ": ").replace("augment_shift", "shift").replace("_", " ")
                     + (" (cap)" if a["cap"] else ""), fontsize=9)
        ax.set_ylabel("val L1" if metric == "val_l1" else "val acc %", labelpad=1)
        ax.grid(alpha=0.3)
        ax.margins(x=0.15, y=0.2)
    for ax in list(axes.flat)[len(questions):]:
        ax.axis("off")
    fig.suptitle("Validation study: score per value tried (ring: chosen)")
    _save(fig, path)


def rounds(runs: dict[str, list[list[dict]]], path) -> None:
    """Self-training (extras/semi_supervised.py), mean over seeds per start point: test and validation accuracy
    per round (0: the start model; test as large hollow markers, validation as small filled ones just to the right),
    and the accuracy of the pseudo-labels each round keeps; one legend below both panels."""
    fig, axes = plt.subplots(1, 2, figsize=(TEXT_WIDTH, 3.2))
    for i, (name, h) in enumerate(runs.items()):
        for ax, key, style, ms, what in ((axes[0], "test_accuracy", "o-", 6, ", test"),
                                         (axes[0], "val_accuracy", "s--", 3, ", validation"),
                                         (axes[1], "pseudo", "o-", 3, ", pseudo-labels")):
            rounds = range(len(h[0]) - (key == "pseudo"))
            get = (lambda row: row["pseudo"]["accuracy"] or 0.0) if key == "pseudo" else (lambda row, k=key: row[k])
            dodge = 0.12 if key == "val_accuracy" else 0.0  # validation beside test, not on it
            y = [100 * sum(get(run[r]) for run in h) / len(h) for r in rounds]
            ax.plot([r + dodge for r in rounds], y, style, ms=ms,
                    mfc="none" if key == "test_accuracy" else COLORS(i), color=COLORS(i), label=f"{name} start{what}")
    axes[0].set(xlabel="round (0: the start model)", ylabel="accuracy %", title="Test and validation accuracy")
    axes[1].set(xlabel="round whose model made them", ylabel="pseudo-label accuracy %",
                title="Accuracy of the pseudo-labels kept")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, frameon=False)
    _save(fig, path, rect=(0, 0.5 / 3.2, 1, 1))
