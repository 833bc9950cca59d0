"""Splitting long texts into overlapping chunks, preferring paragraph, sentence and word breaks."""

from __future__ import annotations

_BREAKS = ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ")


def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """Chunks of at most ``size`` characters; consecutive chunks share about ``overlap`` characters."""
    if size <= 0:
        raise ValueError("chunk size must be positive")
    if not 0 <= overlap < size:
        raise ValueError("chunk overlap must be at least 0 and smaller than the chunk size")
    text = text.strip()
    if len(text) <= size:
        return [text]
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            end = _break_before(text, start, end, min_end=start + size // 2)
        chunk = text[start:end].strip()
        if chunk:
            chunks.append(chunk)
        if end >= len(text):
            break
        # step back by the overlap, but always move forward
        start = max(end - overlap, start + 1)
        start = _word_start(text, start, limit=end)
    return chunks


def _break_before(text: str, start: int, end: int, min_end: int) -> int:
    window = text[start:end]
    for sep in _BREAKS:
        idx = window.rfind(sep)
        if idx >= 0 and start + idx + len(sep) > min_end:
            return start + idx + len(sep)
    return end


def _word_start(text: str, pos: int, limit: int) -> int:
    # begin the overlap at a word boundary rather than mid-word
    if pos == 0 or text[pos - 1].isspace():
        return pos
    nxt = text.find(" ", pos, limit)
    return nxt + 1 if nxt >= 0 else pos
