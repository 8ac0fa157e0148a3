"""Texts as a reader should see them: HTML entities decoded.

    display_text("Fate #39;s wheels")   # "Fate's wheels"

Display only: the models read the texts as they are.
"""

from __future__ import annotations

import html
import re

# News scrapes (AG News among them) often lost an entity's "&" to a space: "fate #39;s", " quot;Hi quot;".
_BROKEN_NUMERIC = re.compile(r"(?<!&) ?#(\d{1,6});")
_BROKEN_NAMED = re.compile(r"(?<![&\w])(quot|amp|lt|gt|apos);")


def display_text(text: str) -> str:
    """``text`` with HTML entities decoded (``&#39;``, ``&quot;``, ``&lt;``) and entities that lost their
    ``&`` (``fate #39;s``, ``quot;Hi``) repaired, for showing it. Never for what a model reads."""
    text = _BROKEN_NUMERIC.sub(lambda m: f"&#{m.group(1)};", str(text))
    text = _BROKEN_NAMED.sub(lambda m: f"&{m.group(1)};", text)
    return html.unescape(text)

