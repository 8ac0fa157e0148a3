import pandas as pd
import pytest

from conftest import LABELS, make_texts, shared_data_dir, write_hub_folder
from distill_core.config import DataConfig
from distill_core.data import DataError, load_splits, make_loader, padding_efficiency, resolve_dataset, tokenize_splits


def _cfg(path, **kw):
    return DataConfig(dataset=str(path), **kw)


def test_folder_without_validation_gets_a_stratified_carve(tmp_path):
    d = write_hub_folder(tmp_path / "news", {"train": make_texts(80, 0), "test": make_texts(20, 1)})
    s = load_splits(_cfg(d, validation_fraction=0.25), seed=1)
    assert s.label_names == LABELS
    assert (len(s.train), len(s.validation), len(s.test)) == (60, 20, 20)
    assert sorted(pd.Series(list(s.validation["label"])).value_counts().tolist()) == [5, 5, 5, 5]
    assert any("validation split carved" in n for n in s.notes)
    # Seeded: the same seed gives the same carve.
    assert list(load_splits(_cfg(d, validation_fraction=0.25), seed=1).validation["text"]) == list(s.validation["text"])


def test_folder_with_all_splits_is_used_as_is(tmp_path):
    d = write_hub_folder(tmp_path / "news", {"train": make_texts(40, 0), "validation": make_texts(8, 1),
                                             "test": make_texts(12, 2)})
    s = load_splits(_cfg(d))
    assert (len(s.train), len(s.validation), len(s.test)) == (40, 8, 12)
    assert s.notes == []


def test_single_split_folder_carves_validation_and_test(tmp_path):
    d = write_hub_folder(tmp_path / "one", {"train": make_texts(100, 0)})
    s = load_splits(_cfg(d, validation_fraction=0.1, test_fraction=0.2))
    assert (len(s.train), len(s.validation), len(s.test)) == (72, 8, 20)


def test_string_labels_map_to_sorted_ids_and_keep_names(tmp_path):
    df = pd.DataFrame({"sentence": ["good film", "bad film", "great plot", "terrible plot"] * 5,
                       "label": ["pos", "neg", "pos", "neg"] * 5})
    d = write_hub_folder(tmp_path / "strings", {"train": df, "test": df.head(8)}, names=None)
    s = load_splits(_cfg(d))
    assert s.label_names == ["neg", "pos"]
    assert s.text_column == "sentence"
    row = s.test[0]
    assert (row["text"], s.label_names[row["label"]]) == ("good film", "pos")


def test_configurable_columns(tmp_path):
    df = pd.DataFrame({"body": ["x y", "y z", "z x", "x x"] * 4, "topic": [0, 1, 0, 1] * 4})
    d = write_hub_folder(tmp_path / "custom", {"train": df, "test": df}, names=None)
    with pytest.raises(DataError, match="--text-column"):
        load_splits(_cfg(d))
    s = load_splits(_cfg(d, text_column="body", label_column="topic"))
    assert s.label_names == ["0", "1"] and len(s.test) == 16


def test_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_splits(_cfg(tmp_path / "nope" if False else "./does/not/exist"))


def test_split_with_zero_rows(tmp_path):
    empty = make_texts(4, 0).iloc[0:0]
    d = write_hub_folder(tmp_path / "empty", {"train": make_texts(40, 0), "test": empty})
    with pytest.raises(DataError, match="'test' has 0 rows"):
        load_splits(_cfg(d))


def test_label_outside_declared_names(tmp_path):
    bad = make_texts(20, 0)
    bad.loc[3, "label"] = 7
    d = write_hub_folder(tmp_path / "bad", {"train": make_texts(40, 0), "test": bad})
    with pytest.raises(DataError, match=r"outside the declared names"):
        load_splits(_cfg(d))


def test_fewer_than_two_classes(tmp_path):
    df = pd.DataFrame({"text": ["a b", "b c", "c d"] * 4, "label": ["only"] * 12})
    d = write_hub_folder(tmp_path / "one_class", {"train": df, "test": df}, names=None)
    with pytest.raises(DataError, match="at least 2"):
        load_splits(_cfg(d))


def test_empty_text_rows_are_refused_with_a_count(tmp_path):
    df = make_texts(20, 0)
    df.loc[[2, 5], "text"] = "   "
    d = write_hub_folder(tmp_path / "blank", {"train": df, "test": make_texts(8, 1)})
    with pytest.raises(DataError, match="2 row"):
        load_splits(_cfg(d))


def test_stratified_subsample(tmp_path):
    d = write_hub_folder(tmp_path / "news", {"train": make_texts(200, 0), "test": make_texts(20, 1)})
    s = load_splits(_cfg(d, max_train_samples=40))
    assert len(s.train) == 40
    assert sorted(pd.Series(list(s.train["label"])).value_counts().tolist()) == [10, 10, 10, 10]


def test_short_name_resolution(tmp_path, monkeypatch):
    write_hub_folder(tmp_path / "ag_news", {"train": make_texts(8, 0)})
    assert resolve_dataset(DataConfig(dataset="ag_news", data_dir=str(tmp_path))) == str((tmp_path / "ag_news").resolve())
    monkeypatch.setenv("DISTILL_DATA_DIR", str(tmp_path))
    assert resolve_dataset(DataConfig(dataset="ag_news")).endswith("ag_news")
    monkeypatch.delenv("DISTILL_DATA_DIR")
    monkeypatch.setattr("distill_core.config.SHARED_DATA_DIR", tmp_path / "no_shared_copies")
    assert resolve_dataset(DataConfig(dataset="ag_news")) == "fancyzhx/ag_news"
    assert resolve_dataset(DataConfig(dataset="imdb")) == "stanfordnlp/imdb"


def test_offline_without_local_copy_says_both_fixes(tmp_path):
    with pytest.raises(DataError) as e:
        load_splits(DataConfig(dataset="ag_news", data_dir=str(tmp_path)))
    msg = str(e.value)
    assert "--data-dir" in msg and "hub" in msg


def test_length_grouped_batches_waste_little_padding(tmp_path, tokenizer):
    # Enough rows for Trainer-style mega-batches (50 batches) to form.
    df = make_texts(1200, 3)
    d = write_hub_folder(tmp_path / "news", {"train": df, "test": df.head(16)})
    s = load_splits(_cfg(d))
    tok = tokenize_splits(s, tokenizer, max_length=32)
    grouped = padding_efficiency(make_loader(tok["train"], tokenizer, 16, shuffle=True, seed=0))
    random_ = padding_efficiency(make_loader(tok["train"], tokenizer, 16, shuffle=True, seed=0, group_by_length=False))
    fixed = padding_efficiency(make_loader(tok["train"], tokenizer, 16, shuffle=True, seed=0, pad_to=32,
                                           group_by_length=False))
    assert fixed < 0.5, fixed  # short texts padded to 32
    assert random_ > fixed, (random_, fixed)
    assert grouped > random_ + 0.05, (grouped, random_)
    assert grouped > 0.85, grouped


def test_grouped_loader_covers_every_example_once(tmp_path, tokenizer):
    d = write_hub_folder(tmp_path / "news", {"train": make_texts(50, 0), "test": make_texts(8, 1)})
    tok = tokenize_splits(load_splits(_cfg(d)), tokenizer, max_length=32)
    loader = make_loader(tok["train"], tokenizer, 8, shuffle=True, seed=0)
    seen = [i for b in loader.batch_sampler for i in b]
    assert sorted(seen) == list(range(len(tok["train"])))


@pytest.mark.skipif(shared_data_dir() is None, reason="../shared/data is not present")
@pytest.mark.parametrize("name,labels", [("ag_news", ["World", "Sports", "Business", "Sci/Tech"]),
                                         ("rotten_tomatoes", ["neg", "pos"])])
def test_shared_hub_folders_load_with_their_card_labels(name, labels):
    s = load_splits(DataConfig(dataset=name, data_dir=str(shared_data_dir()), max_train_samples=200,
                               max_eval_samples=50, max_test_samples=50))
    assert s.label_names == labels
    assert len(s.train) == 200 and len(s.test) == 50


def test_same_folder_name_different_content_is_not_served_from_a_stale_cache(tmp_path):
    """datasets caches a carded folder by its name; ours keys the cache on the files themselves."""
    a = write_hub_folder(tmp_path / "a" / "same", {"train": make_texts(40, 0), "test": make_texts(8, 1)})
    b = write_hub_folder(tmp_path / "b" / "same", {"train": make_texts(120, 0), "test": make_texts(8, 1)})
    assert len(load_splits(_cfg(a)).train) == 36
    assert len(load_splits(_cfg(b)).train) == 108
    # An edited file is picked up too.
    make_texts(60, 2).to_csv(a / "train.csv", index=False)
    assert len(load_splits(_cfg(a)).train) == 54


def test_unlabelled_test_split_is_replaced_by_a_carve(tmp_path):
    """GLUE-style hub test splits carry label -1 everywhere; they are dropped, not an error."""
    test = make_texts(12, 1)
    test["label"] = -1
    d = write_hub_folder(tmp_path / "glue", {"train": make_texts(80, 0), "test": test,
                                             "unsupervised": make_texts(4, 2).assign(label=-1)})
    s = load_splits(_cfg(d, test_fraction=0.25))
    assert len(s.test) == 20 and set(s.test["label"]) <= {0, 1, 2, 3}
    assert any("no labels" in n for n in s.notes)
