import numpy as np
import pytest

from benchmark.errors import BenchError
from benchmark.models import MODELS, get_model

SMALL = {"local_attn_blstm": {"dense_units": 16, "lstm_units": 8, "epochs": 2, "batch_size": 8},
         "attn_blstm": {"units": 8, "epochs": 2, "batch_size": 8},
         "crnn": {"filters": 4, "conv_blocks": 2, "projection_units": 8, "lstm_units": 4, "dense_units": 8,
                  "epochs": 2, "batch_size": 8},
         "svm": {}, "xgboost": {"n_estimators": 20}}


def toy_data(n=30, n_features=6, seed=0):
    """Three classes whose frames differ in mean: learnable, variable length, 6 speakers."""
    rng = np.random.default_rng(seed)
    labels = np.array(["anger", "neutral", "sadness"] * (n // 3))
    sequences = [(rng.standard_normal((rng.integers(15, 40), n_features)) + 2.0 * "ans".index(lab[0])).astype(np.float32)
                 for lab in labels]
    return sequences, labels, np.repeat(np.arange(6), n // 6)


def test_attn_blstm_has_the_reported_758022_parameters():
    model = get_model("attn_blstm").build(46, 6, n_frames=157)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 758_022
    assert model.get_layer("blstm").count_params() == 620_544


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_model_follows_the_sklearn_contract(name):
    sequences, labels, groups = toy_data()
    model = get_model(name, **SMALL[name])
    X = sequences if model.input_kind == "sequence" else np.stack([s.mean(0) for s in sequences])
    assert model.fit(X, labels, groups=groups) is model
    assert list(model.classes_) == ["anger", "neutral", "sadness"]
    proba = model.predict_proba(X)
    assert proba.shape == (30, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(model.predict(X), model.classes_[np.argmax(proba, axis=1)])
    assert not np.allclose(proba, proba[:1])  # the output depends on the input
    if model.input_kind == "vector":  # separable toy data: the baselines must learn it
        assert (model.predict(X) == labels).mean() > 0.9


@pytest.mark.parametrize("name,bucketing", [("attn_blstm", True), ("attn_blstm", False), ("local_attn_blstm", True),
                                            ("crnn", True)])
def test_networks_learn_separable_data_whatever_the_order_of_the_labels(name, bucketing):
    """The targets of training must follow each utterance's own label. Utterances come in an order
    where the i-th is not of class i (a bug that trained class c towards the label of utterance c
    fitted the toy data, whose first utterances are anger, neutral, sadness)."""
    sequences, labels, groups = toy_data()
    order = np.random.default_rng(1).permutation(len(labels))
    order = order[np.argsort(labels[order] != "sadness", kind="stable")]  # sadness (class 2) first
    sequences, labels, groups = [sequences[i] for i in order], labels[order], groups[order]
    params = {**SMALL[name], "epochs": 40, "learning_rate": 1e-2, "validation_fraction": 0.0, "bucketing": bucketing}
    if name == "local_attn_blstm":
        params["dropout"] = 0.0  # 30 utterances: dropout only slows the fit down
    model = get_model(name, **params).fit(sequences, labels, groups=groups)
    assert (model.predict(sequences) == labels).mean() > 0.9


@pytest.mark.parametrize("name", ["local_attn_blstm", "attn_blstm", "crnn"])
def test_prediction_does_not_depend_on_batch_mates(name):
    """Padding is masked: an utterance scores the same alone or beside a much longer one."""
    sequences, labels, groups = toy_data()
    model = get_model(name, **SMALL[name]).fit(sequences, labels, groups=groups)
    alone = model.predict_proba([sequences[0]])
    padded = model.predict_proba([sequences[0], np.full((300, 6), 3.0, dtype=np.float32)])[:1]
    np.testing.assert_allclose(alone, padded, atol=1e-6)


def test_local_attention_gives_padded_frames_zero_weight():
    import keras

    from benchmark.models.keras_layers import LocalAttentionPooling

    layer = LocalAttentionPooling()
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    mask = np.array([[True, True, True, False, False], [True] * 5])
    layer.build(x.shape)
    alpha = keras.ops.convert_to_numpy(layer.attention(x, mask))
    assert np.all(alpha[0, 3:] == 0) and np.allclose(alpha.sum(axis=1), 1)
    changed = x.copy()
    changed[0, 3:] = 100.0  # whatever sits in padded frames cannot change the pooled vector
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, mask=mask)),
                               keras.ops.convert_to_numpy(layer(changed, mask=mask)), atol=1e-6)


def test_unknown_model_and_parameter():
    with pytest.raises(BenchError, match="unknown model"):
        get_model("transformer")
    with pytest.raises(BenchError, match="unknown parameter"):
        get_model("svm", units=3)
    with pytest.raises(BenchError, match="C=0 is invalid"):
        get_model("svm", C=0)
    with pytest.raises(BenchError, match="subsample=1.5 is invalid"):
        get_model("xgboost", subsample=1.5)
    assert set(SMALL) <= set(MODELS)
