"""The `dvector` variants scored on URDU while the feature set was built (issue 11; README,
"A pre-trained speaker encoder").

    python experiments/dvector_variants.py --data-dir ../shared/data

EMO-DB -> URDU, 4 classes, each corpus standardised with its own statistics (as ``--norm corpus``),
ser-bench's svm at C=10 (its default) unless a row says otherwise; pooled UAR on URDU. Every row
is scored on the test corpus, so these say how much the design moves the number, not which
design to report. Variants:

* ``embedding``: resemblyzer's own 256-value utterance embedding (its ``embed_utterance``);
* ``whole L..``: the mean and std of LSTM layer outputs with the whole utterance run through the
  network at once (not in the 1.6 s windows it was trained on);
* ``windows L..``: the same statistics over 1.6 s windows every 0.8 s: the feature set itself
  (``--features dvector --feature-param layers=..``; all three layers are its default).

``import resemblyzer`` needs ``webrtcvad``, which needs setuptools' removed ``pkg_resources``; only
its voice-activity trimming uses it, which is not called here, so an empty stand-in module is used
when the real one cannot be imported (as in ``tests/test_speaker_encoder.py``).
"""

from __future__ import annotations

import argparse
import sys
import types
import warnings

import numpy as np

LAYER_SETS = ((0,), (1,), (2,), (0, 1), (1, 2), (0, 1, 2))


def zscore(X):
    std = X.std(0)
    return (X - X.mean(0)) / np.where(std > 1e-8, std, 1.0)


def columns(layers, width=512):
    """Columns of layers' [mean | std] blocks in a vector holding all three layers."""
    return np.concatenate([np.arange(layer * width, (layer + 1) * width) for layer in layers])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import torch
    from sklearn.metrics import balanced_accuracy_score

    from benchmark.audio import load_audio
    from benchmark.corpora import get_corpus
    from benchmark.features import get_feature_set
    from benchmark.features import speaker_encoder as dvec
    from benchmark.models.sklearn_models import SVMClassifier

    try:
        import webrtcvad  # noqa: F401
    except ImportError:
        sys.modules["webrtcvad"] = types.ModuleType("webrtcvad")
    from resemblyzer import VoiceEncoder

    encoder = VoiceEncoder("cpu", verbose=False)
    windowed = get_feature_set("dvector")

    def describe(path):
        signal = dvec.louder(load_audio(path))
        mel = dvec.mel_power(signal, 16_000)
        whole, hidden = [], torch.from_numpy(mel[None])
        with torch.inference_mode():
            for layer in dvec.encoder_layers():
                hidden, _ = layer(hidden)
                frames = hidden[0].double().numpy()
                whole += [frames.mean(0), frames.std(0)]
        return (encoder.embed_utterance(signal), np.concatenate(whole),
                windowed.extract(signal, parts=("functionals",))["functionals"])

    data = {}
    for name in ("emodb", "urdu"):
        utterances = [u for u in get_corpus(name, data_dir=args.data_dir).utterances()
                      if u.emotion in ("anger", "happiness", "neutral", "sadness")]
        rows = [describe(u.path) for u in utterances]
        data[name] = ([np.stack(part) for part in zip(*rows)], np.array([u.emotion for u in utterances]))
        print(f"{name}: {len(utterances)} utterances", flush=True)
    (train_parts, train_labels), (test_parts, test_labels) = data["emodb"], data["urdu"]

    def uar(part, cols=slice(None), C=10.0):
        model = SVMClassifier(C=C).fit(zscore(train_parts[part][:, cols]), train_labels)
        return balanced_accuracy_score(test_labels, model.predict(zscore(test_parts[part][:, cols])))

    print(f"{'embedding':22s} UAR {uar(0):.3f}")
    for kind, part in (("whole", 1), ("windows", 2)):
        for layers in LAYER_SETS:
            print(f"{kind + ' L' + ''.join(map(str, layers)):22s} UAR {uar(part, columns(layers)):.3f}", flush=True)
    print(f"{'windows L012, C=0.3':22s} UAR {uar(2, C=0.3):.3f}")


if __name__ == "__main__":
    main()
