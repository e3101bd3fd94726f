"""One helper per kind of figure; every figure is written atomically as a PNG."""
import matplotlib

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt
import numpy as np

from train import atomic_path

DIGIT_COLORS = plt.get_cmap("tab10")


def _save(fig, path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)


def history_curves(history: list[dict], path, title: str) -> None:
    """Train and test loss per epoch, and accuracy (as error %) if the history has it."""
    has_acc = "test_accuracy" in history[0]
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 5.5, 3.8), squeeze=False)
    epochs = [r["epoch"] for r in history]
    ax = axes[0, 0]
    ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    ax.plot(epochs, [r["test_loss"] for r in history], "s-", label="test")
    ax.set(xlabel="epoch", ylabel="loss (log scale)", yscale="log", title=f"{title}: loss")
    ax.legend()
    ax.grid(alpha=0.3)
    if has_acc:
        ax = axes[0, 1]
        ax.plot(epochs, [100 * (1 - r["train_accuracy"]) for r in history], "o-", label="train")
        ax.plot(epochs, [100 * (1 - r["test_accuracy"]) for r in history], "s-", label="test")
        ax.set(xlabel="epoch", ylabel="error % (log scale) = 100 - accuracy %", yscale="log",
               title=f"{title}: error")
        for r, y in ((history[-1], 100 * (1 - history[-1]["test_accuracy"])),):
            ax.annotate(f"test acc {100 * r['test_accuracy']:.2f}%", (r["epoch"], y),
                        textcoords="offset points", xytext=(-60, 12))
        ax.legend()
        ax.grid(alpha=0.3, which="both")
    _save(fig, path)


def image_rows(rows: dict[str, "np.ndarray"], path, title: str, per_row: int | None = None) -> None:
    """Rows of 28x28 digits, one labelled row per entry of `rows` (e.g. input / reconstruction).
    If per_row is set, each entry is wrapped onto several rows of that many digits."""
    rows = {k: np.asarray(v).reshape(-1, 28, 28) for k, v in rows.items()}
    n = len(next(iter(rows.values())))
    per_row = per_row or n
    chunks = [(label, imgs[start:start + per_row]) for start in range(0, n, per_row) for label, imgs in rows.items()]
    fig, axes = plt.subplots(len(chunks), per_row, figsize=(per_row * 0.6 + 1.2, len(chunks) * 0.66 + 0.5),
                             squeeze=False)
    for r, (label, imgs) in enumerate(chunks):
        for c in range(per_row):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(imgs):
                ax.imshow(imgs[c], cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def bars(groups: dict[str, list[float]], labels: list[str], path, ylabel: str, title: str,
         fmt: str = "{:.4f}") -> None:
    """Grouped bar chart: one bar per (label, group); values written on the bars."""
    x = np.arange(len(labels))
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(min(9.0, max(4.5, 0.45 * len(labels) * len(groups) + 2)), 3.8))
    for i, (name, values) in enumerate(groups.items()):
        b = ax.bar(x + (i - (len(groups) - 1) / 2) * width, values, width, label=name)
        if len(labels) * len(groups) <= 6:
            ax.bar_label(b, [fmt.format(v) for v in values], fontsize=8)
    ax.set_xticks(x, labels)
    ax.set(ylabel=ylabel, title=title)
    if len(groups) > 1:
        ax.legend()
    ax.grid(alpha=0.3, axis="y")
    _save(fig, path)


def xy_curve(x: list, series: dict[str, list[float]], path, xlabel: str, ylabel: str, title: str,
             logx: bool = False) -> None:
    """One or more y(x) lines with markers (e.g. test L1 against latent size)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, y in series.items():
        ax.plot(x, y, "o-", label=name)
        for xi, yi in zip(x, y):
            ax.annotate(f"{yi:.3f}", (xi, yi), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    if logx:
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(v) for v in x])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if len(series) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)


def mean_band(runs: dict[str, list[list[dict]]], path, title: str, x_key: str = "seconds") -> None:
    """For each experiment (a list of per-seed histories): mean curve and min-max band of loss
    and accuracy, train dashed and test solid, against `x_key` (training seconds or epoch)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, histories) in enumerate(runs.items()):
        color = DIGIT_COLORS(i)
        x = np.mean([[r[x_key] for r in h] for h in histories], axis=0)
        for ax, metric, scale in ((axes[0], "loss", 1), (axes[1], "accuracy", 100)):
            for split, style in (("train", "--"), ("test", "-")):
                key = f"{split}_{metric}"
                y = scale * np.array([[r[key] for r in h] for h in histories])
                ax.plot(x, y.mean(0), style, color=color, label=f"{name} {split}")
                ax.fill_between(x, y.min(0), y.max(0), color=color, alpha=0.15 if split == "test" else 0.07)
    xlabel = "training time (s)" if x_key == "seconds" else x_key
    axes[0].set(xlabel=xlabel, ylabel="cross-entropy loss (log scale)", yscale="log", title="loss")
    axes[1].set(xlabel=xlabel, ylabel="accuracy %", title="accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    _save(fig, path)


def latent_scatter(panels: dict[str, tuple["np.ndarray", "np.ndarray"]], path, title: str) -> None:
    """Side-by-side 2-D scatter plots (e.g. PCA of latent codes), points coloured by digit."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    for ax, (name, (xy, labels)) in zip(axes[0], panels.items()):
        for digit in range(10):
            sel = labels == digit
            ax.scatter(xy[sel, 0], xy[sel, 1], s=3, alpha=0.5, color=DIGIT_COLORS(digit), label=str(digit))
        ax.set(title=name, xlabel="PC 1", ylabel="PC 2")
        ax.legend(markerscale=4, fontsize=7, ncol=2, loc="best")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
