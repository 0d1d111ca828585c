"""A run's pooled confusion matrices as files (PNG pictures and CSV tables), made without MLflow.

Why apart from :mod:`benchmark.tracking`: drawing them (matplotlib's import and two figures, ~2 s
here) is work the process that computes a run can do while the process that logs it is still
importing MLflow (:mod:`benchmark.forked`); the logging side then only writes the bytes.
"""

from __future__ import annotations

import io


def confusion_matrix_files(y_true, y_pred, labels, prefix: str = "") -> dict[str, bytes]:
    """Counts and row-normalised matrices: ``{prefix}confusion_{counts,normalised}.{png,csv}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    labels = list(labels)
    files = {}
    for normalize, suffix in ((None, "counts"), ("true", "normalised")):
        matrix = confusion_matrix(y_true, y_pred, labels=labels, normalize=normalize)
        figure, axes = plt.subplots(figsize=(1.1 * len(labels) + 3, 1.1 * len(labels) + 2.5))
        ConfusionMatrixDisplay(matrix, display_labels=labels).plot(
            ax=axes, cmap="Blues", values_format="d" if normalize is None else ".2f", colorbar=False,
            xticks_rotation=45)
        axes.set_title(f"{prefix}confusion ({suffix})".strip())
        figure.tight_layout()
        picture = io.BytesIO()
        figure.savefig(picture, format="png")
        plt.close(figure)
        files[f"{prefix}confusion_{suffix}.png"] = picture.getvalue()
        frame = pd.DataFrame(matrix, index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="predicted"))
        files[f"{prefix}confusion_{suffix}.csv"] = frame.to_csv().encode()
    return files
