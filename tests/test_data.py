from __future__ import annotations

import json

import pytest

from iclopt.data import Example, infer_labels, load_examples, load_task
from iclopt.datasets import get_task
from iclopt.errors import InputDataError, UnknownNameError


def test_instruction_induction_special_fields(bench):
    rhymes = load_examples(bench / "induce" / "rhymes_v1.json")
    assert rhymes[0].input == "pig"
    assert rhymes[0].target == "big"  # the 'output' field is what a demo shows
    assert set(rhymes[0].answers) == {"big", "pig", "dig"}
    de = load_examples(bench / "execute" / "translation_en-de_v1.json")
    assert "Platz" in de[0].answers and "Ort" in de[0].answers
    assert de[0].id == "1"


def test_benchmark_task_protocol_sizes(bench):
    task = load_task(
        pool=bench / "induce" / "sentiment_v1.json",
        val=bench / "valid" / "sentiment_v1.json",
        test=bench / "execute" / "sentiment_v1.json",
    )
    assert (len(task.pool), len(task.val), len(task.test)) == (100, 20, 100)
    assert task.labels == ("negative", "positive")
    assert task.metric == "ii_exact_match"  # the instruction-induction protocol
    syn = load_task(
        pool=bench / "induce" / "synonyms_v1.json", val=bench / "valid" / "synonyms_v1.json"
    )
    assert syn.metric == "ii_contains" and syn.labels is None


def test_jsonl_csv_and_custom_columns(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        "\n".join(json.dumps({"q": f"x{i}", "a": [f"y{i}", "z"]}) for i in range(5))
    )
    ex = load_examples(tmp_path / "a.jsonl", input_col="q", output_col="a")
    assert ex[2] == Example("x2", ("y2", "z"), id="2")
    (tmp_path / "b.csv").write_text("text,label\nhello,greet\nbye,leave\n")
    ex = load_examples(tmp_path / "b.csv", input_col="text", output_col="label")
    assert [e.target for e in ex] == ["greet", "leave"]


def test_hf_dataset_dir_and_parquet(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"input": ["a", "b", "c"], "output": ["1", "2", "3"]})
    ds.save_to_disk(str(tmp_path / "saved"))
    ds.to_parquet(str(tmp_path / "d.parquet"))
    assert [e.target for e in load_examples(tmp_path / "saved")] == ["1", "2", "3"]
    assert [e.input for e in load_examples(tmp_path / "d.parquet")] == ["a", "b", "c"]


def test_single_file_split_by_seed(tmp_path):
    rows = [{"input": f"in {i}", "output": f"out {i}"} for i in range(60)]
    (tmp_path / "all.json").write_text(json.dumps(rows))
    a = load_task(data=tmp_path / "all.json", pool_size=30, val_size=10, test_size=10, split_seed=1)
    b = load_task(data=tmp_path / "all.json", pool_size=30, val_size=10, test_size=10, split_seed=1)
    c = load_task(data=tmp_path / "all.json", pool_size=30, val_size=10, test_size=10, split_seed=2)
    assert (len(a.pool), len(a.val), len(a.test)) == (30, 10, 10)
    assert a.pool == b.pool and a.pool != c.pool
    ids = [e.id for e in a.pool + a.val + a.test]
    assert len(set(ids)) == 50  # disjoint splits
    small = load_task(data=tmp_path / "all.json")  # 60 < 100 + 20 + 100: scaled down
    assert len(small.pool) + len(small.val) + len(small.test) <= 60 and small.val


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "invalid JSON at line 1"),
        (b'[{"input": "a"}]', "no column 'output'"),
        (b"[]", "the pool is empty"),
        (b'[{"input": "caf\xe9", "output": "x"}]', "not valid UTF-8"),
        (b'{"foo": 1}', "expected a list of examples"),
    ],
)
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"input": "a", "output": "b"}]))
    with pytest.raises(InputDataError, match=message) as info:
        load_task(pool=path, val=good)
    assert "bad.json" in str(info.value)


def test_missing_file_and_bad_sizes(tmp_path):
    with pytest.raises(InputDataError, match="file not found"):
        load_examples(tmp_path / "nope.json")
    with pytest.raises(InputDataError, match="pool_size must be >= 1"):
        load_task(data=tmp_path / "x.json", pool_size=0)


def test_infer_labels():
    pool = [Example(f"t{i}", "yes" if i % 2 else "no") for i in range(10)]
    assert infer_labels(pool) == ("no", "yes")
    gen = [Example(f"t{i}", f"answer {i}") for i in range(10)]
    assert infer_labels(gen) is None
    assert infer_labels(pool, [Example("q", "maybe")]) is None


def test_builtin_tasks():
    s = get_task("sentiment")
    assert (len(s.pool), len(s.val), len(s.test)) == (100, 20, 40)
    assert {e.target for e in s.pool} == {"positive", "negative"}
    inputs = [e.input for e in s.pool + s.val + s.test]
    assert len(set(inputs)) == len(inputs)
    li = get_task("last_item")
    assert all(e.target == e.input.split(", ")[-1] for e in li.pool)
    assert get_task("last_item").pool == li.pool  # generated deterministically
    with pytest.raises(UnknownNameError, match="valid: last_item, sentiment"):
        get_task("nope")
