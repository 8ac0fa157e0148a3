"""What every view shares: legend placement, and the PNG export of matplotlib figures (no kaleido needed)."""

from __future__ import annotations

import io

TOP_LEGEND = dict(orientation="h", yanchor="bottom", y=1.02, x=0)  # above the plot, never over the data


def png_bytes(fig) -> bytes:
    """A matplotlib ``Figure`` as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()
