"""Reading the chapters' MyST sources for tests: exercise titles and solution texts."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_RE = re.compile(r"^book/(\d\d-[a-z0-9-]+)$")
_OPEN = re.compile(r"^(`{3,}|:{3,})\{(exercise|solution)\}(.*)$")


def sources_sha256() -> str:
    """A hash of what the book is built from: the pages in book/, _config.yml and _toc.yml."""
    import hashlib
    digest = hashlib.sha256()
    for path in sorted([ROOT / "_config.yml", ROOT / "_toc.yml"] + list((ROOT / "book").glob("*.md"))):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def toc_chapters() -> list[str]:
    """Numbered chapters in _toc.yml, as 'NN-name'."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    out = []
    for part in toc.get("parts", []):
        for entry in part.get("chapters", []):
            m = CHAPTER_RE.match(entry["file"])
            if m:
                out.append(m.group(1))
    return out


def blocks(text: str, kind: str) -> list[tuple[str, str]]:
    """(argument line, body) of every ``{exercise}`` or ``{solution}`` block."""
    out, fence, arg, body, current = [], None, "", [], None
    for line in text.splitlines():
        if fence is None:
            m = _OPEN.match(line)
            if m:
                fence, current, arg, body = m.group(1), m.group(2), m.group(3).strip(), []
            continue
        if line.strip() == fence:
            if current == kind:
                out.append((arg, "\n".join(l for l in body if not l.startswith(":"))))
            fence = None
            continue
        body.append(line)
    return out


_PLAIN_WORD = re.compile(r"^[A-Za-z][A-Za-z,.;'-]*$")


def plain_phrases(markdown: str, words: int = 7) -> list[str]:
    """Runs of ``words`` plain words (no markup, numbers or symbols) from a block of MyST.

    Such a run renders to the same text in HTML, so it can be searched for in a built page.
    """
    text = re.sub(r"\{[a-z:]+\}`[^`]*`|`[^`]*`|\*\*|\[[^\]]*\]\([^)]*\)", " | ", markdown)
    text = re.sub(r"```.*?```", " | ", text, flags=re.S)
    phrases, run = [], []
    for token in text.split():
        if _PLAIN_WORD.match(token) and token not in ("|",):
            run.append(token)
            if len(run) == words:
                phrases.append(" ".join(run))
                run = []
        else:
            run = []
    return phrases


def page_text(html: str) -> str:
    """The visible text of a built page, whitespace collapsed (scripts and styles dropped)."""
    import html as _html
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S | re.I)
    text = _html.unescape(re.sub(r"<[^>]+>", " ", html))
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.split())


def without_blocks(text: str, kind: str) -> str:
    """The source with every ``{kind}`` block removed."""
    out, fence, skipping = [], None, False
    for line in text.splitlines():
        if fence is None:
            m = _OPEN.match(line)
            if m:
                fence, skipping = m.group(1), m.group(2) == kind
                if not skipping:
                    out.append(line)
                continue
            out.append(line)
        else:
            if line.strip() == fence:
                fence = None
                if not skipping:
                    out.append(line)
                continue
            if not skipping:
                out.append(line)
    return "\n".join(out)


def solution_phrases(text: str) -> list[tuple[str, list[str]]]:
    """Per solution: its plain phrases that occur nowhere outside a solution in any page of book/."""
    rest = " ".join(" ".join(without_blocks(p.read_text(), "solution").split())
                    for p in sorted((ROOT / "book").glob("*.md")))
    return [(label, [p for p in plain_phrases(body) if p not in rest])
            for label, body in blocks(text, "solution")]
