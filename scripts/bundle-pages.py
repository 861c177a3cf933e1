#!/usr/bin/env python3
"""What a page load of the web UI fetches, from a built bundle's files: for each lazily loaded
route, the main module plus the modules `__wasm_split_manifest.json` lists for it (the route's
own module and the chunks it shares with other routes), as raw bytes, gzip and brotli (the
precompressed files the manager sends), and the operations issue's target (brotli <= 300 KB).

usage: bundle-pages.py BUNDLE_DIR [TARGET_KB]   (BUNDLE_DIR: SITE/pkg/<hash>)
"""
import json
import os
import re
import sys


def size(path):
    return os.path.getsize(path) if os.path.exists(path) else None


def main():
    d = sys.argv[1]
    target = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    manifest = json.load(open(os.path.join(d, "__wasm_split_manifest.json")))
    main_files = ["patch_manager_ui_bg"]
    rows = []
    for key, modules in manifest.items():
        # `__hosts_route_view_<hash>` → `hosts`
        name = re.sub(r"^__(.*)_route_view_\d+$", r"\1", key)
        files = [os.path.join(d, m + ".wasm") for m in main_files + modules]
        raw = sum(size(f) for f in files)
        gz = sum(size(f + ".gz") for f in files)
        brs = [size(f + ".br") for f in files]
        br = sum(brs) if None not in brs else None
        rows.append((name, len(files), raw, gz, br))
    rows.sort(key=lambda r: -(r[4] if r[4] is not None else r[3]))
    print("| page | modules fetched | raw (KB) | gzip (KB) | brotli (KB) |")
    print("|---|---|---|---|---|")
    for name, n, raw, gz, br in rows:
        print(f"| {name} | {n} | {raw / 1000:,.0f} | {gz / 1000:,.0f} | "
              f"{'–' if br is None else f'{br / 1000:,.0f}'} |")
    if all(r[4] is not None for r in rows):
        over = [r[0] for r in rows if r[4] > target * 1000]
        print(f"\ntarget <= {target} KB brotli per page load: "
              + (f"met by every page" if not over else
                 f"missed by {len(over)} of {len(rows)} pages ({', '.join(over)})"))


main()
