"""The run picker's labels and the sidebar's run details: a ``RunInfo`` in, text out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..config import MODEL_KINDS, MODEL_TITLES
from ..runs import RunInfo


def default_run_id(runs: Sequence[RunInfo]) -> str | None:
    """The newest complete run; else the newest run at all (``runs`` is newest first)."""
    for r in runs:
        if r.status == "complete":
            return r.run_id
    return runs[0].run_id if runs else None


def run_label(info: RunInfo) -> str:
    """How a run reads in the picker: its id, plus its state when it is not complete."""
    if info.status == "running":
        # Plain text: a selectbox option cannot show icons, and emoji fonts are not everywhere.
        return f"{info.run_id}  (training: {info.stage or 'starting'})"
    if info.status != "complete":
        return f"{info.run_id}  ({info.status})"
    return info.run_id


def run_details_markdown(info: RunInfo) -> str:
    """The run's dataset, labels, teacher, student and KD settings as compact markdown (sidebar)."""
    cfg = info.config
    ds = cfg.get("dataset_info", {})
    rows = ds.get("rows", {})
    arch = cfg.get("architectures", {})
    kd = cfg.get("kd", {})
    data = cfg.get("data", {})
    lines = [
        f"**Status** {info.status}" + (f" (stage {info.stage})" if info.status == "running" and info.stage else ""),
        f"**Dataset** `{Path(str(ds.get('source') or info.dataset)).name}`"
        + (f" — train {rows.get('train', '?'):,} · val {rows.get('validation', '?'):,} · test {rows.get('test', '?'):,}"
           if rows else ""),
        f"**Labels** {', '.join(info.label_names) or '?'}",
        f"**Max length** {data.get('max_length', '?')} tokens"
        + (f" ({data['truncation']} of long texts)" if data.get("truncation") not in (None, "head") else ""),
    ]
    for kind in MODEL_KINDS:
        a = arch.get(kind)
        if a:
            extra = (f", from teacher layers {', '.join(str(j + 1) for j in a['layer_map'])} (counting from 1)"
                     if kind != "teacher" and a.get("layer_map") else "")
            heads = "n/a" if "heads" in a and a["heads"] is None else a.get("heads", "?")  # LSTM: no heads
            lines.append(f"**{MODEL_TITLES[kind]}** {a.get('class', '?')}: {a.get('layers', '?')} layers, "
                         f"{heads} heads, {_millions(a.get('parameters'))} parameters{extra}")
    if kd:
        lines.append(f"**KD** T = {kd.get('temperature')}, alpha = {kd.get('alpha')}, "
                     f"hidden weight = {kd.get('hidden_weight', 0)}")
    if isinstance(cfg.get("class_weights"), dict):
        weights = ", ".join(f"{name} {w:.2f}" for name, w in cfg["class_weights"].items() if isinstance(w, (int, float)))
        lines.append(f"**Class weights** (balanced) {weights}")
    if cfg.get("preset"):
        lines.append(f"**Preset** {cfg['preset']} · created {cfg.get('created', '?')} · "
                     f"{cfg.get('environment', {}).get('device', '?')}")
    if info.error:
        lines.append(f"**Error** {info.error}")
    return "  \n".join(lines)


def _millions(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "?"
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{int(n):,}"


