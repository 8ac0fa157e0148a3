"""Magnitude pruning: the pure parts on tiny modules (Linear, a bidirectional LSTM), the `prune` command on the
tiny run, its figures, and the Performance page with and without pruning results.

Latency is only checked for sanity; whether zeros make a model faster is read off a real run's figures.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from distill_core.train import prune
from distill_core.cli import main
from distill_core.train.models import load_trained
from distill_core.runs import RESULTS_FILE, load_run, pruned_model_dir, pruning_path
from distill_core.views import pruning as pv
from tiny_models import tiny_teacher

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "performance.py")


class TinyLSTMClassifier(torch.nn.Module):
    """Embedding -> 2-layer bidirectional LSTM -> Linear head, the shape of an LSTM student."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(50, 16)
        self.lstm = torch.nn.LSTM(16, 12, num_layers=2, bidirectional=True, batch_first=True)
        self.head = torch.nn.Linear(24, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, C)
        out, _ = self.lstm(self.embed(ids))  # (B, T, 2H)
        return self.head(out[:, -1])


def _zeros(t: torch.Tensor) -> int:
    return int((t == 0).sum())


# ----------------------------------------------------------------------------- pruning on modules


@pytest.mark.parametrize("amount", [0.3, 0.5, 0.9])
def test_every_linear_weight_reaches_the_amount(amount):
    model = tiny_teacher(178, ["a", "b", "c", "d"])
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    biases = [m.bias.detach().clone() for m in linears]
    embeddings = model.bert.embeddings.word_embeddings.weight.detach().clone()
    targets = prune.prune_model(model, amount)
    assert [m for m, _ in targets] == linears and all(n == "weight" for _, n in targets)
    for m, bias in zip(linears, biases):
        assert _zeros(m.weight) == round(amount * m.weight.numel())  # the amount exactly, per matrix
        assert torch.equal(m.bias, bias)  # biases are left whole
        assert not hasattr(m, "weight_orig") and not hasattr(m, "weight_mask")  # permanent
    s = prune.sparsity(targets)
    assert s["prunable"] == sum(m.weight.numel() for m in linears)
    assert abs(s["sparsity"] - amount) <= len(targets) / s["prunable"]  # up to one weight per matrix
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, embeddings)  # embeddings are left whole


def test_an_lstms_weights_reach_the_amount_and_its_forward_uses_them():
    model = TinyLSTMClassifier()
    ids = torch.randint(0, 50, (3, 7))
    before = model(ids)
    targets = prune.prune_model(model, 0.4)
    names = sorted(n for m, n in targets if m is model.lstm)
    assert names == sorted(f"weight_{k}_l{i}{d}" for k in ("ih", "hh") for i in (0, 1) for d in ("", "_reverse"))
    for m, n in targets:
        w = getattr(m, n)
        assert isinstance(w, torch.nn.Parameter) and _zeros(w) == round(0.4 * w.numel())
    assert not any(n.endswith(("_orig", "_mask")) for n, _ in model.named_parameters())
    assert all(_zeros(getattr(model.lstm, n)) == 0 for n, _ in model.lstm.named_parameters() if n.startswith("bias"))
    # The LSTM computes with the pruned weights: a fresh copy loaded from its state dict gives the same output.
    fresh = TinyLSTMClassifier()
    fresh.load_state_dict(model.state_dict())
    after = model(ids)
    assert torch.allclose(after, fresh(ids)) and not torch.allclose(after, before)
    assert prune.sparsity(targets)["sparsity"] == pytest.approx(0.4, abs=len(targets) / prune.sparsity(targets)["prunable"])


def test_amount_zero_leaves_the_logits_unchanged():
    model = tiny_teacher(178, ["a", "b"]).eval()
    ids = torch.randint(1, 178, (2, 9))
    before = model(input_ids=ids).logits
    targets = prune.prune_model(model, 0.0)
    assert torch.equal(model(input_ids=ids).logits, before)
    assert prune.sparsity(targets)["zeros"] == 0


def test_file_sizes_show_what_zeros_buy_compressed(tmp_path):
    dense, sparse = tmp_path / "dense.bin", tmp_path / "sparse.bin"
    w = torch.randn(256, 256)
    dense.write_bytes(w.numpy().tobytes())
    w[torch.rand_like(w) < 0.9] = 0
    sparse.write_bytes(w.numpy().tobytes())
    d, s = prune.file_sizes(dense), prune.file_sizes(sparse)
    assert d["size_bytes"] == s["size_bytes"] == 256 * 256 * 4
    assert s["compressed_bytes"] < 0.5 * d["compressed_bytes"]


def test_settings_are_checked_before_any_work():
    assert prune.PruneSettings(amounts=[0.5], save=0.7).validate().all_amounts() == [0.0, 0.5, 0.7]
    for bad, flag in (({"amounts": [1.0]}, "--amount"), ({"amounts": [-0.1]}, "--amount"), ({"amounts": []}, "--amount"),
                      ({"save": 0.0}, "--save"), ({"model": "nope"}, "--model"), ({"repeats": 0}, "--repeats")):
        with pytest.raises(prune.ConfigError, match=flag):
            prune.PruneSettings(**bad).validate()


# ----------------------------------------------------------------------------- the command on the tiny run


@pytest.fixture(scope="module")
def pruned(tiny_run, tmp_path_factory) -> tuple[Path, str]:
    """A copy of the tiny run pruned by the real CLI (student, amounts 0.5 and 0.9, the 0.5 one saved)."""
    import contextlib
    import io

    dst = tmp_path_factory.mktemp("pruned") / tiny_run.name
    shutil.copytree(tiny_run, dst)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["prune", str(dst), "--model", "student", "--amount", "0.5,0.9", "--save", "0.5", "--texts", "2",
                   "--repeats", "3"])
    assert rc == 0
    return dst, out.getvalue()


def test_prune_command_writes_the_results_and_prints_the_table(pruned):
    run, printed = pruned
    doc = prune.check_pruning(json.loads(pruning_path(run, "student").read_text()))
    rows = doc["rows"]
    assert [r["amount"] for r in rows] == [0.0, 0.5, 0.9] and doc["model"] == "student" and doc["when"]
    assert doc["settings"]["amounts"] == [0.0, 0.5, 0.9] and doc["settings"]["save"] == 0.5
    for r in rows:
        assert abs(r["sparsity"] - r["amount"]) < 1e-3 and r["latency_ms"]["p50"] > 0
        # Zeros outside the pruned weights (a padding row, zero biases) stay what the dense model has.
        assert r["parameters"] - r["nonzero_parameters"] - r["zeros"] == rows[0]["parameters"] - rows[0]["nonzero_parameters"]
    dense = rows[0]
    assert dense["zeros"] == 0 and dense["test_agreement_with_dense"] == 1.0
    # The dense row is the run's own student: the same test accuracy that `evaluate` recorded.
    results = json.loads((run / RESULTS_FILE).read_text())
    assert dense["test_accuracy"] == pytest.approx(results["models"]["student"]["accuracy"])
    assert rows[2]["size_bytes"] == pytest.approx(dense["size_bytes"], rel=0.01)
    assert rows[2]["compressed_bytes"] < dense["compressed_bytes"]
    assert "amount sparsity  val acc test acc latency ms  size MB compressed MB" in printed
    assert "student_pruned50/" in printed and pv.pruning_note(doc) in printed


def test_saved_pruned_model_loads_and_leaves_the_run_as_it_was(pruned):
    run, _ = pruned
    folder = pruned_model_dir(run, "student", 0.5)
    assert folder.name == "student_pruned50" and (folder / "model.safetensors").is_file()
    assert (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()
    model = load_trained(folder)
    targets = prune.prunable_weights(model)
    saved = json.loads(pruning_path(run, "student").read_text())["saved"]
    assert saved == {"amount": 0.5, "sparsity": pytest.approx(prune.sparsity(targets)["sparsity"]),
                     "folder": "student_pruned50"}
    assert model.config.distill_pruning["amount"] == 0.5
    info = load_run(run)
    assert info.status == "complete" and info.models == ["teacher", "student", "baseline"]


@pytest.mark.parametrize("args, says", [
    (["--amount", "0.5,1.0"], "--amount 0.5,1 is out of range"),
    (["--save", "1.5"], "--save 1.5 is out of range"),
    (["--model", "baseline"], "has no baseline model"),
    (["--model", "teacher2"], "--model 'teacher2' is not a model of a run"),
])
def test_prune_mistakes_are_one_line_with_exit_code_2(tiny_run, tmp_path, caplog, args, says):
    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / "baseline")
    with caplog.at_level(logging.ERROR):
        assert main(["prune", str(run), *args]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and says in errors[0] and "\n" not in errors[0]
    assert not pruning_path(run, "student").exists()


def test_prune_of_a_missing_run_is_one_line(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        assert main(["prune", "no-such-run", "--output-dir", str(tmp_path)]) == 2
    assert "No run 'no-such-run'" in caplog.text


# ----------------------------------------------------------------------------- figures


def _doc(p50: list[float], compressed: list[int]) -> dict:
    rows = [{"amount": a, "sparsity": a, "parameters": 100, "nonzero_parameters": int(100 * (1 - a)),
             "val_accuracy": 0.9 - a / 4, "test_accuracy": 0.88 - a / 4, "latency_ms": {"p50": p, "p95": p * 1.2},
             "size_bytes": 4 << 20, "compressed_bytes": c} for a, p, c in zip((0.0, 0.5, 0.9), p50, compressed)]
    return {"model": "student", "settings": {"method": prune.METHOD}, "rows": rows}


def test_pruning_figure_table_and_png():
    doc = _doc([5.0, 5.1, 4.9], [4 << 20, 3 << 20, 1 << 20])
    fig = pv.pruning_figure(doc)
    assert [t.name for t in fig.data] == ["Validation accuracy", "Test accuracy", "Latency p50 (ms)",
                                          "Size on disk (MB)", "Size compressed (MB)"]
    assert list(fig.data[1].y) == pytest.approx([0.88, 0.755, 0.655]) and list(fig.data[4].y) == [4.0, 3.0, 1.0]
    table = pv.pruning_table(doc)
    assert list(table["Amount"]) == [0.0, 0.5, 0.9] and list(table["Compressed (MB)"]) == [4.0, 3.0, 1.0]
    assert pv.pruning_png(doc)[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_note_claims_only_what_the_figures_show():
    same = pv.pruning_note(_doc([5.0, 5.1, 4.9], [4 << 20, 3 << 20, 1 << 20]))
    assert same.startswith("Unstructured zeros did not make the dense CPU kernels faster and made the file smaller "
                           "only when compressed: at 90% sparsity, batch-1 p50 4.90 ms against 5.00 ms dense")
    faster = pv.pruning_note(_doc([5.0, 4.0, 2.0], [4 << 20, 4 << 20, 4 << 20]))
    assert faster.startswith("Measured: at 90% sparsity, batch-1 p50 2.00 ms against 5.00 ms dense")
    assert pv.pruning_note({"rows": _doc([5.0] * 3, [1] * 3)["rows"][:1]}) is None


# ----------------------------------------------------------------------------- the page


def _page(runs_root: Path, run_id: str, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DISTILL_RUNS_DIR", str(runs_root))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["run_id"] = run_id
    return at.run()


def test_performance_page_without_pruning_shows_the_command(run_dir, monkeypatch):
    at = _page(run_dir.parent, run_dir.name, monkeypatch)
    assert not at.exception
    assert any(f"python -m distill_core prune {run_dir.name} --model student" in c.value for c in at.caption)
    assert not [c for c in at.get("plotly_chart") if c.key == "perf_pruning"]


def test_performance_page_draws_the_pruning_results(pruned, monkeypatch):
    run, _ = pruned
    at = _page(run.parent, run.name, monkeypatch)
    assert not at.exception, [e.value for e in at.exception]
    chart = [c for c in at.get("plotly_chart") if c.key == "perf_pruning"]
    assert chart
    names = [t["name"] for t in json.loads(chart[0].proto.spec)["data"]]
    assert names[:2] == ["Validation accuracy", "Test accuracy"]
    assert {"Pruning figure (PNG)", "Pruning table (CSV)"} <= {d.proto.label for d in at.get("download_button")}
    assert any("Sparsity" in df.value.columns for df in at.dataframe)
    assert any("student_pruned50/" in c.value for c in at.caption)


def test_a_pruning_file_of_the_wrong_shape_is_a_message_on_the_page(run_dir, monkeypatch):
    pruning_path(run_dir, "student").write_text(json.dumps({"rows": [{"amount": 0.5}]}))
    at = _page(run_dir.parent, run_dir.name, monkeypatch)
    assert not at.exception
    assert any("pruning_student.json does not have the expected shape" in e.value for e in at.error)
