"""Text data in: CSV/TSV/JSONL/folders, encodings (UTF-8, BOM, CP932), bad rows, splits."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path

import pytest

from modeltailor import DataError
from modeltailor.data import TextItem, decode_file, load_text, read_text_rows

SPAMASSASSIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "spamassassin.csv"


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def _reviews(n: int = 4) -> str:
    rows = [
        f"review {i} {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}" for i in range(n)
    ]
    return "text,label\n" + "\n".join(rows) + "\n"


def _reasons(data) -> dict[str, str]:
    return {s.path: s.reason for s in data.skipped}


def test_csv_items_know_their_line(tmp_path):
    path = _write(tmp_path / "r.csv", _reviews())
    data = load_text(path)
    assert data.class_names == ["neg", "pos"]
    assert data.labels == [0, 1, 0, 1]
    assert data.items[1] == TextItem("review 1 good", f"{path}:line 3")
    assert str(data.items[1]) == f"{path}:line 3" and data.texts[0] == "review 0 bad"
    assert data.source == str(path) and not data.skipped


def test_utf8_bom_header_is_found(tmp_path):
    path = _write(
        tmp_path / "bom.csv", "Text,LABEL\nこんにちは,挨拶\nさようなら,別れ\n", "utf-8-sig"
    )
    data = load_text(path)
    assert data.texts == ["こんにちは", "さようなら"]
    assert decode_file(path).encoding == "utf-8-sig"


def test_excel_cp932_csv_with_japanese_columns_labels_and_file_name(tmp_path):
    text = "本文,評価\n"  # what Excel saves as "CSV (comma delimited)" on a Japanese PC
    text += "とても良い商品でした,良い\r\n配送が遅くて残念です,悪い\r\n"
    path = _write(tmp_path / "レビュー.csv", text, "cp932")
    data = load_text(path, text_column="本文", label_column="評価")
    assert data.texts == ["とても良い商品でした", "配送が遅くて残念です"]
    assert data.class_names == ["悪い", "良い"]
    assert decode_file(path).encoding == "cp932"
    assert str(data.items[0]).endswith("レビュー.csv:line 2")


def test_unknown_encoding_is_an_error_naming_line_and_byte(tmp_path):
    path = _write(tmp_path / "latin.csv", "text,label\nplain,a\ncafé crème,b\n", "cp1252")
    with pytest.raises(DataError, match=r"line 3 \(byte 22\).*--encoding") as exc:
        load_text(path)
    assert "\n" not in str(exc.value)
    assert load_text(path, encoding="cp1252").texts == ["plain", "café crème"]


def test_damaged_utf8_is_not_guessed_as_cp932(tmp_path):
    good = "text,label\n" + "".join(f"日本語のテキスト{i},良い\n" for i in range(5))
    path = tmp_path / "damaged.csv"
    path.write_bytes(good.encode() + b"\x82\xa0broken,\xff\n")
    with pytest.raises(DataError, match="line 7.*rest is UTF-8"):
        load_text(path)


def test_explicit_encoding_skips_undecodable_rows_by_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b'text,label\nfine,a\n"multi\nline \xff here",b\nalso fine,b\nok,a\n')
    data = load_text(path, encoding="utf-8")
    assert data.texts == ["fine", "also fine", "ok"]
    reason = _reasons(data)[f"{path}:line 3"]
    assert "line 4" in reason and "\\xff" in reason
    assert all("\ufffd" not in t and "\udcff" not in t for t in data.texts)


def test_damaged_cp932_names_the_bad_line_and_can_skip_it(tmp_path):
    path = tmp_path / "sjis.csv"
    path.write_bytes("text,label\nあいう,a\n".encode("cp932") + b"\x81 bad,b\nok,b\n")
    with pytest.raises(DataError, match="Shift_JIS/CP932 damaged at line 3.*--encoding cp932"):
        load_text(path)
    data = load_text(path, encoding="cp932")
    assert data.texts == ["あいう", "ok"] and list(_reasons(data)) == [f"{path}:line 3"]


def test_unknown_encoding_name_is_an_error(tmp_path):
    path = _write(tmp_path / "r.csv", _reviews())
    with pytest.raises(DataError, match="unknown encoding 'klingon'"):
        load_text(path, encoding="klingon")


def test_quoted_multiline_fields_report_the_line_they_start_on(tmp_path):
    body = 'text,label\n"first\r\nsecond, with comma\r\n""quoted""",a\nnext,b\n"",a\n'
    path = _write(tmp_path / "m.csv", body)
    data = load_text(path)
    assert data.texts == ['first\nsecond, with comma\n"quoted"', "next"]
    assert [i.origin for i in data.items] == [f"{path}:line 2", f"{path}:line 5"]
    assert _reasons(data) == {f"{path}:line 6": "empty text"}


def test_tsv(tmp_path):
    path = _write(tmp_path / "r.tsv", 'label\ttext\npos\t"tabs\tand\nlines"\nneg\tplain, commas\n')
    data = load_text(path)
    assert data.texts == ["tabs\tand\nlines", "plain, commas"]
    assert data.class_names == ["neg", "pos"] and data.labels == [1, 0]


def test_semicolon_csv_from_european_excel(tmp_path):
    data = load_text(_write(tmp_path / "eu.csv", "text;label\nsehr gut, danke;pos\nschlecht;neg\n"))
    assert data.texts == ["sehr gut, danke", "schlecht"]


def test_jsonl_broken_line_is_skipped_and_numbers_stay_strings(tmp_path):
    lines = [
        json.dumps({"text": "great", "label": 5}),
        '{"text": "oops", "label": ',
        json.dumps([1, 2]),
        "",
        json.dumps({"text": "awful", "label": 1, "extra": {"k": 1}}),
        json.dumps({"text": "meh", "label": 10}),
    ]
    path = _write(tmp_path / "r.jsonl", "\n".join(lines) + "\n")
    data = load_text(path)
    assert data.texts == ["great", "awful", "meh"]
    assert data.class_names == ["1", "5", "10"]  # integer labels sort as numbers
    reasons = _reasons(data)
    assert reasons[f"{path}:line 2"].startswith("not valid JSON")
    assert "not an object" in reasons[f"{path}:line 3"]


def test_json_array_is_not_jsonl(tmp_path):
    path = _write(tmp_path / "r.jsonl", '[{"text": "a", "label": "x"},\n {"text": "b"}]\n')
    with pytest.raises(DataError, match="JSON array"):
        load_text(path)
    with pytest.raises(DataError, match=r"JSON Lines \(\.jsonl\)"):
        load_text(_write(tmp_path / "r.json", "[]"))


def test_missing_column_lists_the_columns_found(tmp_path):
    path = _write(tmp_path / "r.csv", "Review,Stars\nnice,5\nbad,1\n")
    with pytest.raises(DataError, match=r"no column 'text'; columns found: 'Review', 'Stars'"):
        load_text(path)
    with pytest.raises(DataError, match="no column 'label'.*--label-column"):
        load_text(path, text_column="review")
    data = load_text(path, text_column="review", label_column="STARS")
    assert data.texts == ["nice", "bad"] and data.class_names == ["1", "5"]


def test_empty_text_missing_label_and_short_rows_are_reported(tmp_path):
    body = 'text,label\n  ,a\nno label,\nok,a\nok too,b\n,,\n"unclosed,a\nx,b\ny,a\n'
    path = _write(tmp_path / "r.csv", body)
    data = load_text(path)
    assert data.texts == ["ok", "ok too"]
    reasons = _reasons(data)
    assert reasons[f"{path}:line 2"] == "empty text"
    assert reasons[f"{path}:line 3"] == "missing label"
    assert "lines 7-9: an unclosed quote?" in reasons[f"{path}:line 7"]
    assert len(data.skipped) == 3  # the row of empty cells (line 6) is no example


def test_folder_per_class_txt(tmp_path):
    nfd = unicodedata.normalize("NFD", "ポジティブ")  # how macOS writes Japanese names
    _write(tmp_path / nfd / "一.txt", "最高でした！\n")
    _write(tmp_path / nfd / "二.txt", "また買います", "cp932")
    _write(tmp_path / "neg" / "a.txt", "terrible\r\nnever again")
    _write(tmp_path / "neg" / "empty.txt", " \n")
    _write(tmp_path / "neg" / "notes.md", "not data")
    _write(tmp_path / "neg" / ".hidden.txt", "ignored")
    data = load_text(tmp_path)
    assert data.class_names == ["neg", "ポジティブ"]
    assert sorted(data.texts) == ["terrible\nnever again", "また買います", "最高でした！"]
    reasons = {Path(p).name: r for p, r in _reasons(data).items()}
    assert reasons == {"empty.txt": "empty text", "notes.md": "not a .txt file"}


def test_txt_folder_errors_say_what_to_do(tmp_path):
    _write(tmp_path / "a.txt", "loose")
    with pytest.raises(DataError, match="own sub-folder"):
        load_text(tmp_path)
    with pytest.raises(DataError, match="one example"):
        load_text(tmp_path / "a.txt")
    with pytest.raises(DataError, match="no such file"):
        load_text(tmp_path / "missing.csv")


def test_predefined_train_val_test_folders(tmp_path):
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        for cls in ("ham", "spam"):
            for i in range(n):
                _write(tmp_path / split / cls / f"{i}.txt", f"{split} {cls} {i}")
    data = load_text(tmp_path)
    train, val, test = data.split(0.5, 0.25, seed=0)
    assert (len(train), len(val), len(test)) == (6, 2, 2)
    assert train.class_names == ["ham", "spam"] and all(t.startswith("val") for t in val.texts)


def test_predefined_train_val_test_files(tmp_path):
    _write(tmp_path / "train.csv", _reviews(6))
    _write(tmp_path / "valid.tsv", "text\tlabel\nv1\tpos\nv2\tneg\n")
    _write(tmp_path / "test.jsonl", json.dumps({"text": "t", "label": "pos"}) + "\n")
    train, val, test = load_text(tmp_path).split()
    assert (len(train), len(val), len(test)) == (6, 2, 1)
    assert val.source == str(tmp_path / "valid.tsv") and test.class_names == ["neg", "pos"]
    _write(tmp_path / "test.jsonl", json.dumps({"text": "t", "label": "other"}) + "\n")
    with pytest.raises(DataError, match="no training examples: \\['other'\\]"):
        load_text(tmp_path)


def test_digests_hash_the_text_not_the_line(tmp_path):
    path = _write(tmp_path / "r.csv", "text,label\nsame,a\nsame,b\nother,a\n")
    data = load_text(path)
    again = load_text(_write(tmp_path / "copy.csv", "label,text\nb,other\na,  same\n"))
    d = data.digests()
    assert d[0] == d[1] == hashlib.sha1(b"same").hexdigest() != d[2]
    assert set(again.digests()) == set(d)
    dropped = data.without({data.items[0]: "test"})  # equal texts stay distinct items
    assert dropped.items == data.items[1:] and dropped.skipped[-1].path == f"{path}:line 2"


def test_split_is_stratified_seeded_and_disjoint(tmp_path):
    rows = [f"text {c} {i},{c}" for c in ("a", "b") for i in range(10)]
    data = load_text(_write(tmp_path / "r.csv", "text,label\n" + "\n".join(rows)))
    train, val, test = data.split(0.8, 0.1, seed=3)
    assert [len(train), len(val), len(test)] == [16, 2, 2]
    assert test.class_counts() == {"a": 1, "b": 1}
    assert set(train.items).isdisjoint(test.items) and isinstance(test.items[0], TextItem)
    assert data.split(0.8, 0.1, seed=3)[2].items == test.items
    assert data.split(0.8, 0.1, seed=4)[2].items != test.items


@pytest.mark.parametrize("labels,message", [("aaaa", "at least 2 classes"), ("aaab", "'b' has 1")])
def test_same_validation_as_images(tmp_path, labels, message):
    rows = "".join(f"t{i},{lab}\n" for i, lab in enumerate(labels))
    data = load_text(_write(tmp_path / "r.csv", "text,label\n" + rows))
    with pytest.raises(DataError, match=message):
        data.validate()


def test_class_names_of_a_trained_model(tmp_path):
    path = _write(tmp_path / "r.csv", "text,label\nx,pos\ny,neutral\n")
    with pytest.raises(DataError, match=r"'neutral' \(.*r\.csv:line 3\)"):
        load_text(path, class_names=["neg", "pos"])
    data = load_text(path, class_names=["neg", "neutral", "pos"])
    assert data.labels == [2, 1] and data.class_names == ["neg", "neutral", "pos"]


def test_rows_to_predict_keep_their_fields(tmp_path):
    body = 'id,review,stars\n1,great phone,5\n2,,1\n3,"broke\nafter a week",1\n'
    path = _write(tmp_path / "new_reviews.csv", body, "cp932")
    rows = read_text_rows(path, text_column="review")
    assert rows.columns == ["id", "review", "stars"] and rows.text_column == "review"
    assert rows.rows[1] == {"id": "3", "review": "broke\nafter a week", "stars": "1"}
    assert rows.texts == ["great phone", "broke\nafter a week"]
    assert rows.origins[1] == f"{path}:line 4" and _reasons(rows) == {
        f"{path}:line 3": "empty text"
    }
    single = read_text_rows(_write(tmp_path / "one.csv", "コメント\n良い\n"))
    assert single.text_column == "コメント" and single.texts == ["良い"]


def test_rows_to_predict_from_txt_files(tmp_path):
    _write(tmp_path / "in" / "a.txt", "hello")
    _write(tmp_path / "in" / "sub" / "b.txt", "日本語です", "cp932")
    rows = read_text_rows(tmp_path / "in")
    assert rows.texts == ["hello", "日本語です"] and rows.columns == ["file"]
    assert rows.rows[0] == {"file": str(tmp_path / "in" / "a.txt")}


@pytest.mark.slow
@pytest.mark.skipif(not SPAMASSASSIN.exists(), reason="../shared/data/spamassassin.csv absent")
def test_spamassassin_csv():
    data = load_text(SPAMASSASSIN)
    assert len(data) + len(data.skipped) == 6043
    assert len(data) > 6000 and set(data.class_names) >= {"spam"}
    data.validate()
    train, val, test = data.split(0.8, 0.1, seed=0)
    assert len(train) + len(val) + len(test) == len(data)


@pytest.mark.parametrize("suffix,sep", [(".csv", ","), (".tsv", "\t")])
def test_a_header_without_rows_says_so(tmp_path, suffix, sep):
    """One file with a header and nothing under it is not "no usable files found"."""
    path = _write(tmp_path / f"only_header{suffix}", f"text{sep}label\n")
    with pytest.raises(DataError, match="no rows below the header line") as exc:
        load_text(path)
    assert str(exc.value) == f"{path}: no rows below the header line"
    with pytest.raises(DataError, match="no rows below the header line"):
        read_text_rows(path)
    blank = _write(tmp_path / f"blank_rows{suffix}", f"text{sep}label\n{sep}\n\n{sep}\n")
    with pytest.raises(DataError, match=f"{blank}: every row below the header line is empty"):
        load_text(blank)


def _tsv_with_unclosed_quote() -> tuple[str, list[str]]:
    """30 rows; row 5 opens a quote it never closes, later rows hold quotes of their own."""
    texts = [f"message {i}" for i in range(30)]
    texts[4] = '"starts with a quote and never closes'
    texts[9] = 'she wrote "ok" and left'
    texts[15] = '12" pizza'
    labels = ["ham" if i % 3 else "spam" for i in range(30)]
    body = "text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in zip(texts, labels, strict=True))
    return body, texts


def test_tsv_quote_that_never_closes_swallows_no_rows(tmp_path):
    """TSV fields are rarely quoted: an unclosed quote stays a character of its text."""
    body, texts = _tsv_with_unclosed_quote()
    path = _write(tmp_path / "messages.tsv", body)
    data = load_text(path)
    assert data.texts == texts and not data.skipped
    assert data.items[4].origin == f"{path}:line 6"
    rows = read_text_rows(path)
    assert rows.texts == texts and not rows.skipped
    # a consistently quoted TSV (Excel's "Unicode text", R's write.table) keeps its quoting
    quoted = _write(
        tmp_path / "quoted.tsv",
        '"text"\t"label"\n"two\nlines"\t"ham"\n"say ""hi"""\t"spam"\nplain\tham\n',
    )
    assert load_text(quoted).texts == ["two\nlines", 'say "hi"', "plain"]


@pytest.mark.parametrize("label_first", [False, True])
def test_csv_text_that_swallowed_rows_is_reported_by_line(tmp_path, label_first):
    """A quote that never closes merges the following rows into one text (with the last
    one's label); that text is skipped, naming its lines, not trained on."""
    rows = [
        ("row 1", "ham"),
        ("row 2", "spam"),
        ('"starts with a quote and never closes', "ham"),
        ("row 4", "spam"),
        ("row 5", "ham"),
        ('he said "hi"', "spam"),
        ('"Dear all,\nthe meeting, at 5,\nbye"', "ham"),  # a real multi-line text: kept
        ("row 10", "spam"),
    ]
    header = "label,text" if label_first else "text,label"
    lines = [f"{lab},{t}" if label_first else f"{t},{lab}" for t, lab in rows]
    path = _write(tmp_path / "r.csv", header + "\n" + "\n".join(lines) + "\n")
    data = load_text(path)
    assert data.texts == ["row 1", "row 2", "Dear all,\nthe meeting, at 5,\nbye", "row 10"]
    reasons = _reasons(data)
    assert list(reasons) == [f"{path}:line 4"]
    assert reasons[f"{path}:line 4"].startswith("lines 4-7 were read as one row")
    assert "quote" in reasons[f"{path}:line 4"]


def test_text_folders_do_not_follow_links_back_into_the_dataset(tmp_path):
    root = tmp_path / "tickets"
    for cls in ("billing", "bug"):
        for i in range(2):
            _write(root / cls / f"{i}.txt", f"{cls} ticket {i}")
    (root / "self").symlink_to(".")
    (root / "bug" / "copy").symlink_to("../billing")
    data = load_text(root)
    assert data.class_names == ["billing", "bug"] and len(data) == 4
    reasons = _reasons(data)
    assert set(reasons) == {str(root / "self"), str(root / "bug" / "copy")}
    assert "not followed" in reasons[str(root / "self")]
    # split files that are one file under two names
    split = tmp_path / "split"
    _write(split / "train.csv", _reviews(6))
    (split / "val.csv").symlink_to("train.csv")
    data = load_text(split)
    assert data.split()[1] is None
    assert _reasons(data) == {
        str(split / "val.csv"): "the same file as train.csv (a link): not read twice"
    }


def test_nan_none_null_labels_are_missing_and_reported_by_line(tmp_path):
    """What scripts, pandas, R, SQL and Excel write for a missing value is no class."""
    missing = ["NaN", "nan", "None", "null", "NULL", "N/A", "n/a", "NA", "#N/A", "<NA>", " NaN "]
    body = "text,label\nfine,pos\nbad,neg\n" + "".join(f"t{i},{m}\n" for i, m in enumerate(missing))
    path = _write(tmp_path / "r.csv", body)
    data = load_text(path)
    assert data.class_names == ["neg", "pos"] and data.texts == ["fine", "bad"]
    reasons = _reasons(data)
    assert list(reasons) == [f"{path}:line {n}" for n in range(4, 4 + len(missing))]
    assert reasons[f"{path}:line 4"] == (
        "missing label: 'NaN' is how a missing value is written (NaN, None, null, N/A, NA, "
        "#N/A, <NA>, in any case); a real class needs another name"
    )
    assert all(r.startswith("missing label") for r in reasons.values())
    lines = [
        json.dumps({"text": "a", "label": "x"}),
        json.dumps({"text": "b", "label": "y"}),
        '{"text": "c", "label": NaN}',  # what json.dumps writes for float("nan")
        json.dumps({"text": "d", "label": "null"}),
    ]
    jsonl = load_text(_write(tmp_path / "r.jsonl", "\n".join(lines) + "\n"))
    assert jsonl.class_names == ["x", "y"] and len(jsonl.skipped) == 2
