import numpy as np
import pytest

from benchmark.corpora import get_corpus
from benchmark.errors import BenchError
from benchmark.normalise import Normaliser
from benchmark.protocols import CLASS_SETS, PROTOCOLS


def get_protocol(name, classes="all", seed=0, **params):
    cls = PROTOCOLS[name]
    return cls(cls.Params(**params), classes=classes, seed=seed)


@pytest.fixture(scope="module")
def emodb(data_dir):
    return get_corpus("emodb", data_dir=data_dir).utterances()


@pytest.fixture(scope="module")
def urdu(data_dir):
    return get_corpus("urdu", data_dir=data_dir).utterances()


def test_leave_one_speaker_out_on_real_emodb(real_data_dir, real_emodb_dir):
    emodb = get_corpus("emodb", data_dir=real_data_dir).utterances()
    protocol = get_protocol("within_corpus", corpus="emodb")
    data = protocol.select({"emodb": emodb})
    folds = protocol.folds(data)
    assert len(folds) == 10 and len(data.classes) == 7
    for fold in folds:
        assert not set(data.groups[fold.test]) & set(data.groups[fold.train])


def test_leave_one_speaker_out_never_trains_on_the_test_speaker(emodb):
    protocol = get_protocol("within_corpus", corpus="emodb")
    data = protocol.select({"emodb": emodb})
    folds = protocol.folds(data)
    assert len(folds) == len({u.speaker for u in emodb}) == 5 and len(data.classes) == 7
    for fold in folds:
        test_speakers = set(data.groups[fold.test])
        assert len(test_speakers) == 1 and not test_speakers & set(data.groups[fold.train])
        assert fold.name == f"speaker-{next(iter(test_speakers)).split(':')[1]}"
    assert sorted(np.concatenate([f.test for f in folds])) == list(range(len(data.utterances)))


def test_many_speakers_use_speaker_grouped_kfold(urdu):
    protocol = get_protocol("within_corpus", corpus="urdu", folds=3, max_loso_speakers=4)  # 6 speakers > 4
    data = protocol.select({"urdu": urdu})
    folds = protocol.folds(data)
    assert len(folds) == 3
    for fold in folds:
        assert not set(data.groups[fold.test]) & set(data.groups[fold.train])


def test_random_split_is_the_seed_stratified_80_20(emodb):
    protocol = get_protocol("within_corpus", classes="2", corpus="emodb", split="random")
    data = protocol.select({"emodb": emodb})
    (fold,) = protocol.folds(data)
    assert data.classes == ("anger", "neutral") and len(data.utterances) == 2 * 5 * 2
    assert abs(len(fold.test) / len(data.utterances) - 0.2) < 0.01
    train_share = (data.labels[fold.train] == "anger").mean()
    assert abs(train_share - (data.labels[fold.test] == "anger").mean()) < 0.05


def test_cross_corpus_uses_shared_emotions(emodb, urdu, shemo_dir):
    protocol = get_protocol("cross_corpus", train_corpus="emodb", test_corpus="urdu")
    data = protocol.select({"emodb": emodb, "urdu": urdu})
    (fold,) = protocol.folds(data)
    assert data.classes == ("anger", "happiness", "neutral", "sadness")
    assert set(data.corpora[fold.train]) == {"emodb"} and set(data.corpora[fold.test]) == {"urdu"}
    assert len(fold.test) == len(urdu) and len(fold.train) == len([u for u in emodb if u.emotion in data.classes])
    shemo = get_corpus("shemo", root=shemo_dir).utterances()
    five = get_protocol("cross_corpus", classes="5").select({"emodb": emodb, "shemo": shemo})
    assert five.classes == CLASS_SETS["5"]
    with pytest.raises(BenchError, match="fear"):
        get_protocol("cross_corpus", classes="5", test_corpus="urdu").select({"emodb": emodb, "urdu": urdu})


def test_class_sets_and_explicit_lists(emodb):
    for spec, size in (("2", 2), ("5", 5), ("7", 7), ("anger,sadness,boredom", 3)):
        protocol = get_protocol("within_corpus", classes=spec)
        assert len(protocol.select({"emodb": emodb}).classes) == size
    with pytest.raises(BenchError, match="no 3-class set"):
        get_protocol("within_corpus", classes="3").select({"emodb": emodb})
    with pytest.raises(BenchError, match="surprise"):
        get_protocol("within_corpus", classes="6").select({"emodb": emodb})


def test_global_normalisation_uses_training_statistics_only():
    rng = np.random.default_rng(0)
    train = [rng.normal(5, 2, (30, 3)) for _ in range(4)]
    test = [rng.normal(50, 9, (30, 3))]
    norm = Normaliser("global").fit(train)
    np.testing.assert_allclose(norm.mean_, np.concatenate(train).mean(0))
    scaled_test = norm.transform(test)[0]
    assert scaled_test.mean() > 10  # test data is not re-centred on itself


def test_speaker_normalisation_uses_each_speakers_own_statistics():
    rng = np.random.default_rng(1)
    vectors = np.vstack([rng.normal(0, 1, (10, 2)), rng.normal(100, 5, (10, 2))])
    groups = np.array(["a"] * 10 + ["b"] * 10)
    out = Normaliser("speaker").fit(vectors, groups).transform(vectors, groups)
    assert out.shape == vectors.shape
    np.testing.assert_allclose(out[10:].mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(out[10:].std(0), 1, atol=1e-6)
    with pytest.raises(BenchError, match="--norm"):
        Normaliser("zscore")
