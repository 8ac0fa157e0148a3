import pandas as pd
import pytest
from conftest import LABELS, card, make_texts, shared_data_dir, write_hub_folder

from distill_core.train.batching import make_loader, padding_efficiency, tokenize_splits
from distill_core.config import DataConfig
from distill_core.train.data import DataError, load_splits, resolve_dataset


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


# ----------------------------------------------------------------------------- hostile datasets
# Every refusal is one DataError whose one-line message names the cause and the fix, and nothing is written.


def _tree(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def _refused(tmp_path, cfg, *fragments):
    """``load_splits(cfg)`` raises a one-line DataError holding every fragment and leaves tmp_path untouched."""
    before = _tree(tmp_path)
    with pytest.raises(DataError) as e:
        load_splits(cfg)
    msg = str(e.value)
    assert type(e.value) is DataError and "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    assert "An error occurred while generating the dataset" not in msg
    assert _tree(tmp_path) == before
    return msg


def _sentiment(rows):
    return pd.DataFrame({"text": [f"film number {i} was {w}" for i, w in enumerate(["good", "bad"] * rows)][:rows],
                         "label": (["pos", "neg"] * rows)[:rows]})


@pytest.mark.parametrize("split", ["test", "validation"])
def test_string_label_only_outside_train_is_refused(tmp_path, split):
    other = pd.DataFrame({"text": ["a dull film", "a fine film", "a so-so film"],
                          "label": ["neutral", "pos", "neutral"]})
    d = write_hub_folder(tmp_path / "s", {"train": _sentiment(20), split: other}, names=None)
    _refused(tmp_path, _cfg(d), "Label 'neutral' occurs in the " + split + " split (2 rows) but never in train",
             "Fix: add training rows of that class", f"remove those {split} rows")


def test_int_label_only_in_test_is_refused(tmp_path):
    test = make_texts(8, 1)
    test.loc[[1, 5], "label"] = 7
    d = write_hub_folder(tmp_path / "ints", {"train": make_texts(40, 0), "test": test}, names=None)
    _refused(tmp_path, _cfg(d), "Label '7' occurs in the test split (2 rows) but never in train",
             "add training rows of that class")


def test_declared_class_without_training_rows_is_allowed_with_a_warning(tmp_path, caplog):
    train = make_texts(40, 0)
    d = write_hub_folder(tmp_path / "rare", {"train": train[train.label != 3], "test": make_texts(8, 1)})
    with caplog.at_level("WARNING", logger="distill_core.train.data"):
        s = load_splits(_cfg(d))
    assert s.label_names == LABELS
    assert any("'Sci/Tech'" in n and "no training rows" in n and "test has 2 rows" in n for n in s.notes), s.notes
    assert "'Sci/Tech'" in caplog.text


def test_invalid_string_label_under_a_card_names_the_real_cause(tmp_path):
    test = make_texts(8, 1).astype({"label": object})
    test.loc[2, "label"] = "Politics"
    d = write_hub_folder(tmp_path / "card", {"train": make_texts(20, 0), "test": test})
    _refused(tmp_path, _cfg(d), "Could not read test.csv in", "ValueError: Invalid string class label Politics",
             "Fix: use only the label names the README card declares (World, Sports, Business, Sci/Tech)")


@pytest.mark.parametrize("names", [LABELS, None], ids=["card", "no_card"])
def test_latin1_csv_names_file_line_and_fix(tmp_path, names):
    test = make_texts(8, 1)
    test.loc[1, "text"] = "café naïve olé"  # row 1 is line 3, after the header
    d = write_hub_folder(tmp_path / "enc", {"train": make_texts(20, 0)}, names=None)
    test.to_csv(d / "test.csv", index=False, encoding="latin-1")
    if names:
        (d / "README.md").write_text(card(names, {"train": "train.csv", "test": "test.csv"}))
    _refused(tmp_path, _cfg(d), "Could not read test.csv in", "UnicodeDecodeError: byte 0xe9 on line 3 is not valid "
             "UTF-8", "Fix: save the file as UTF-8")


def test_utf16_csv_is_refused_as_not_utf8(tmp_path):
    d = write_hub_folder(tmp_path / "u16", {"test": make_texts(8, 1)}, names=None)
    make_texts(20, 0).to_csv(d / "train.csv", index=False, encoding="utf-16")
    _refused(tmp_path, _cfg(d), "Could not read train.csv in", "byte 0xff on line 1 is not valid UTF-8",
             "save the file as UTF-8")


@pytest.mark.parametrize("names", [LABELS, None], ids=["card", "no_card"])
def test_csv_row_with_too_many_fields_names_file_and_line(tmp_path, names):
    d = write_hub_folder(tmp_path / "fields", {"train": make_texts(20, 0)}, names=names)
    (d / "test.csv").write_text("text,label\nwar talks .,0\nteam won, again,1,1\nnew phone .,3\n")
    if names:
        (d / "README.md").write_text(card(names, {"train": "train.csv", "test": "test.csv"}))
    _refused(tmp_path, _cfg(d), "Could not read test.csv in", "ParserError: Error tokenizing data. C error: "
             "Expected 2 fields in line 3, saw 4", "Fix: give every row as many fields as the header line")


def test_column_of_numbers_in_one_file_and_text_in_another(tmp_path):
    train = make_texts(20, 0).assign(text=[float(i) if i % 2 else None for i in range(20)])
    d = write_hub_folder(tmp_path / "mixed", {"train": train, "test": make_texts(8, 1)}, names=None)
    _refused(tmp_path, _cfg(d), "ArrowInvalid: Failed to parse string", "as a scalar of type double",
             "Fix: give each column the same kind of value in every file")


def test_one_row_train_split_says_what_carving_needs(tmp_path):
    d = write_hub_folder(tmp_path / "one_row", {"train": make_texts(1, 0)})
    msg = _refused(tmp_path, _cfg(d), "The train split has only 1 row: carving a test split (10%, 1 row) and a "
                   "validation split (10%, 0 rows) from it would leave 0 rows for training",
                   "provide test.csv and validation.csv", "--test-fraction / --validation-fraction")
    assert "n_samples" not in msg


def test_two_row_train_split_says_what_carving_needs(tmp_path):
    df = pd.DataFrame({"text": ["war talks .", "team won ."], "label": ["World", "Sports"]})
    d = write_hub_folder(tmp_path / "two_rows", {"train": df, "test": df}, names=None)
    msg = _refused(tmp_path, _cfg(d, validation_fraction=0.2), "The train split has only 2 rows: carving a validation "
                   "split (20%, 1 row) from it would leave 1 row for training", "at least 2 rows of 2 classes",
                   "provide validation.csv", "--validation-fraction")
    assert "holds only" not in msg


def test_single_class_train_split_keeps_a_clear_message(tmp_path):
    train = pd.DataFrame({"text": [f"text {i}" for i in range(12)], "label": ["x"] * 12})
    test = pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]})
    d = write_hub_folder(tmp_path / "one_class", {"train": train, "test": test}, names=None)
    _refused(tmp_path, _cfg(d), "The train split holds only one class ('x'); classification needs at least 2",
             "Fix: add training rows of the other classes")


def test_subsample_that_leaves_one_class_says_what_took_it(tmp_path):
    d = write_hub_folder(tmp_path / "news", {"train": make_texts(40, 0), "test": make_texts(8, 1)})
    _refused(tmp_path, _cfg(d, max_train_samples=1), "After carving validation (10%, --validation-fraction) and "
             "subsampling to 1 row (--max-train-samples), the train split (40 rows before, 1 row after) holds only "
             "one class", "or raise --max-train-samples")


def test_path_like_dataset_that_does_not_exist_fails_at_once(tmp_path, monkeypatch):
    def no_hub(*args, **kwargs):
        raise AssertionError("a path-like name must never reach load_dataset")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("distill_core.train.dataset_files.datasets.load_dataset", no_hub)
    (tmp_path / "data").mkdir()
    _refused(tmp_path, DataConfig(dataset="data/mydata"), "Dataset folder 'data/mydata' not found: "
             f"{tmp_path.resolve() / 'data' / 'mydata'} does not exist", "Fix: pass an existing folder")
    _refused(tmp_path, DataConfig(dataset="mydata.csv"), f"{tmp_path.resolve() / 'mydata.csv'} does not exist")
    (tmp_path / "notes.txt").write_text("text,label\n")
    _refused(tmp_path, DataConfig(dataset="notes.txt"), "'notes.txt' is a .txt file; it takes one .csv, .tsv, .json, "
             ".jsonl, .parquet file", "save the data as CSV")


def test_hub_names_still_go_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./fancyzhx or ./stanfordnlp here
    monkeypatch.setattr("distill_core.config.SHARED_DATA_DIR", tmp_path / "no_shared_copies")
    for name in ("fancyzhx/ag_news", "stanfordnlp/imdb", "cornell-movie-review-data/rotten_tomatoes"):
        assert resolve_dataset(DataConfig(dataset=name)) == name
    assert resolve_dataset(DataConfig(dataset="sst2")) == "stanfordnlp/sst2"


def test_offline_hub_failure_is_one_line_with_the_real_cause(tmp_path):
    msg = _refused(tmp_path, DataConfig(dataset="ag_news", data_dir=str(tmp_path)),
                   "ConnectionError: Couldn't reach 'fancyzhx/ag_news' on the Hub", "Fix: point --data-dir")
    assert "--data-dir" in msg and "hub" in msg


@pytest.mark.parametrize("names", [LABELS, None], ids=["card", "no_card"])
def test_empty_file_is_named(tmp_path, names):
    d = write_hub_folder(tmp_path / "empty_file", {"train": make_texts(20, 0), "test": make_texts(4, 1)},
                         names=names)
    (d / "test.csv").write_text("")
    _refused(tmp_path, _cfg(d), f"test.csv in {d} is empty: no header line and no rows",
             "Fix: write a header (e.g. text,label) and rows into it, or remove the file")


def test_header_only_csv_without_a_card(tmp_path):
    d = write_hub_folder(tmp_path / "header", {"train": make_texts(20, 0), "test": make_texts(4, 1).iloc[0:0]},
                         names=None)
    _refused(tmp_path, _cfg(d), "Split 'test' has 0 rows in", "(test.csv has a header but no rows)", "or fill it")


@pytest.mark.parametrize("names", [LABELS, None], ids=["card", "no_card"])
def test_text_column_of_numbers_is_refused(tmp_path, names):
    df = make_texts(20, 0).assign(text=range(20))
    d = write_hub_folder(tmp_path / "numbers", {"train": df, "test": df.head(8)}, names=names)
    _refused(tmp_path, _cfg(d), "The text column 'text' of split 'train' holds only numbers (e.g. 0, 1, 2), not text",
             "Fix: name the column that holds the texts with --text-column")


@pytest.mark.parametrize("files,held", [({}, "it is empty"), ({"README.md": "# notes"}, "it holds only README.md"),
                                        ({"notes.txt": "hello"}, "it holds only notes.txt")])
def test_folder_without_data_files(tmp_path, files, held):
    d = tmp_path / "no_data"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    _refused(tmp_path, _cfg(d), f"The dataset folder {d} has no CSV/Parquet data file ({held})",
             "Fix: the folder needs one CSV/Parquet file per split")


def test_data_file_of_no_split_is_refused(tmp_path):
    d = write_hub_folder(tmp_path / "extra", {"train": make_texts(40, 0), "test": make_texts(8, 1),
                                              "holdout": make_texts(8, 2)}, names=None)
    _refused(tmp_path, _cfg(d), "holdout.csv in", "belongs to no split, so it would be ignored",
             "Fix: name each data file after its split")


def test_hub_metadata_and_compressed_files_are_not_stray_data(tmp_path):
    d = write_hub_folder(tmp_path / "meta", {"test": make_texts(8, 1)}, names=None)
    make_texts(40, 0).to_csv(d / "train.csv.gz", index=False)
    (d / "dataset_infos.json").write_text('{"default": {"description": ""}}')
    s = load_splits(_cfg(d))
    assert (len(s.train), len(s.test)) == (36, 8)


def test_card_split_with_an_unknown_name_is_dropped_with_a_note(tmp_path, caplog):
    """A split the card declares is deliberate (texts for --transfer-split, say): dropped, but never silently."""
    d = write_hub_folder(tmp_path / "extra", {"train": make_texts(40, 0), "test": make_texts(8, 1),
                                              "holdout": make_texts(8, 2)})
    with caplog.at_level("WARNING", logger="distill_core.train.data"):
        s = load_splits(_cfg(d))
    assert (len(s.train), len(s.test)) == (36, 8)
    assert any("'holdout' not used" in n for n in s.notes), s.notes
    assert "'holdout'" in caplog.text


def test_two_splits_meaning_validation_are_refused(tmp_path):
    d = write_hub_folder(tmp_path / "twice", {"train": make_texts(40, 0), "validation": make_texts(8, 1),
                                              "dev": make_texts(8, 2)})
    _refused(tmp_path, _cfg(d), "has both splits ['validation', 'dev'], which both mean validation",
             "Fix: keep one of them")


def test_missing_labels_under_a_card_are_counted(tmp_path):
    train = make_texts(20, 0).astype({"label": "float"})
    train.loc[3, "label"] = None
    d = write_hub_folder(tmp_path / "nolabel", {"train": train, "test": make_texts(8, 1)})
    _refused(tmp_path, _cfg(d), "Split 'train' has 1 row with no label in column 'label'", "drop or label them")


def test_fractional_labels_are_refused(tmp_path):
    train = make_texts(20, 0).assign(label=lambda df: df.label + 0.5)
    d = write_hub_folder(tmp_path / "scores", {"train": train, "test": train.head(8)}, names=None)
    _refused(tmp_path, _cfg(d), "Label column 'label' holds fractional numbers (e.g. 0.5, 1.5, 2.5 and 1 more)",
             "Fix: name a column of class names")


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_files_with_different_columns_name_both(tmp_path, suffix):
    d = tmp_path / "columns"
    d.mkdir()
    write = {"csv": lambda df, p: df.to_csv(p, index=False), "parquet": lambda df, p: df.to_parquet(p)}[suffix]
    write(make_texts(20, 0), d / f"train.{suffix}")
    write(make_texts(8, 1).rename(columns={"label": "topic"}), d / f"test.{suffix}")
    _refused(tmp_path, _cfg(d), f"test.{suffix} in {d} has columns ['text', 'topic'], but train.{suffix} has "
             "['text', 'label']", "Fix: give every data file the same columns (rename ['topic'] to ['label'])")


def test_file_that_is_not_parquet(tmp_path):
    d = write_hub_folder(tmp_path / "bad_parquet", {}, names=None)
    (d / "train.parquet").write_bytes(b"not a parquet file at all")
    _refused(tmp_path, _cfg(d), "Could not read train.parquet in", "ArrowInvalid: Parquet magic bytes not found",
             "Fix: write the file again as Parquet")


def test_unterminated_quote_names_the_file(tmp_path):
    d = write_hub_folder(tmp_path / "quote", {"test": make_texts(8, 1)}, names=None)
    (d / "train.csv").write_text('text,label\n"war talks never end,0\nteam won .,1\n')
    _refused(tmp_path, _cfg(d), "Could not read train.csv in", "ParserError: Error tokenizing data. C error: EOF "
             "inside string", "quote texts that hold commas, quotes or line breaks")
