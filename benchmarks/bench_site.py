"""Site benchmark: clean build time (every chapter executed) and page weights.

    .venv/bin/python benchmarks/bench_site.py [--site DIR]

Builds the book from scratch into a temporary directory (the project's own ``_build`` is left
alone), then measures every page: its own weight (HTML, including the explorables' embedded
data, plus the images only it uses) and the shared assets it loads (``_static``: plotly.js,
theme CSS/JS), checking that each is loaded once.  Prints PASS/FAIL against the targets:

* a clean build takes < 120 s on 2 cores;
* each chapter page's own weight is < 1.5 MB.

``--site DIR`` measures an existing build instead of building (no build-time check).
Exit status 1 if a target fails.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD_LIMIT_S = 120.0
PAGE_LIMIT_BYTES = 1_500_000
# What a page actually loads: scripts and stylesheets (a rel="preload" hint for the same
# script is the same single fetch, so it is not counted).
ASSET_RE = re.compile(r'<(?:script[^>]*\ssrc|link[^>]*rel="stylesheet"[^>]*\shref)="([^"#?]+)[^"]*"', re.I)
IMAGE_RE = re.compile(r'<img[^>]*\ssrc="([^"#?]+)"', re.I)
DATA_RE = re.compile(r'<script type="application/json" class="explorable-data">(.*?)</script>', re.S)


def build(out_dir: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    # the same command as scripts/build-site (parallel chapter execution, BOOK_JOBS)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "jb_build.py"), "build", str(ROOT),
                    "--all", "-W", "--keep-going", "--path-output", str(out_dir)],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(site: Path) -> tuple[list[dict], dict[str, int]]:
    pages, shared = [], {}
    for html_path in sorted(site.rglob("*.html")):
        rel = html_path.relative_to(site)
        if rel.parts[0] in ("_static", "_sources"):
            continue
        text = html_path.read_text(encoding="utf-8")
        assets = [a for a in ASSET_RE.findall(text) if not a.startswith(("http:", "https:", "//"))]
        counts = Counter(os.path.normpath(html_path.parent / a) for a in assets)
        own_images = sum((html_path.parent / src).stat().st_size for src in IMAGE_RE.findall(text)
                         if (html_path.parent / src).exists())
        page_shared = 0
        for path, _ in counts.items():
            p = Path(path)
            if p.is_file():
                shared[str(p.relative_to(site))] = p.stat().st_size
                page_shared += p.stat().st_size
        pages.append({
            "page": str(rel),
            "html": len(text.encode()),
            "embedded": sum(len(m.encode()) for m in DATA_RE.findall(text)),
            "images": own_images,
            "shared": page_shared,
            "duplicates": sorted(Path(p).name for p, n in counts.items() if n > 1),
            "remote": sorted(a for a in ASSET_RE.findall(text) if a.startswith(("http:", "https:", "//"))),
        })
    return pages, shared


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, help="measure this built site instead of building")
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
        if args.site:
            site = args.site
        else:
            seconds = build(Path(tmp))
            site = Path(tmp) / "_build" / "html"
            verdict = "PASS" if seconds < BUILD_LIMIT_S else "FAIL"
            ok &= verdict == "PASS"
            print(f"clean build with execution: {seconds:6.1f} s  (limit {BUILD_LIMIT_S:.0f} s, "
                  f"ratio {seconds / BUILD_LIMIT_S:.2f}, {os.cpu_count()} CPUs)  {verdict}")
        pages, shared = measure(site)
        print(f"\n{'page':<34}{'own weight':>12}{'(embedded)':>12}{'shared loaded':>15}  verdict")
        for p in pages:
            own = p["html"] + p["images"]
            problems = []
            if own >= PAGE_LIMIT_BYTES:
                problems.append(f"own weight >= {PAGE_LIMIT_BYTES / 1e6:.1f} MB")
            if p["duplicates"]:
                problems.append(f"loaded twice: {p['duplicates']}")
            if p["remote"]:
                problems.append(f"remote assets: {p['remote']}")
            verdict = "FAIL " + "; ".join(problems) if problems else "PASS"
            ok &= not problems
            print(f"{p['page']:<34}{own / 1e3:>9.1f} kB{p['embedded'] / 1e3:>9.1f} kB"
                  f"{p['shared'] / 1e6:>12.2f} MB  {verdict}  (ratio {own / PAGE_LIMIT_BYTES:.3f})")
        total = sum(shared.values())
        print(f"\nshared assets (each served once from _static, cached across pages): "
              f"{len(shared)} files, {total / 1e6:.2f} MB")
        for name, size in sorted(shared.items(), key=lambda kv: -kv[1])[:5]:
            print(f"  {name:<60}{size / 1e3:>10.1f} kB")
    print("\nOVERALL", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
