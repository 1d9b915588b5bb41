#!/usr/bin/env python3
"""Checks that a built listener component matches the WIT world in wit/.

usage: check-component.py WASM_TOOLS WIT_DIR COMPONENT.wasm ALLOWED_WASI

- the component must export `rmq:listener/handler@<version of wit/>`;
- every item (type or function) the component carries for a `rmq:listener` interface must be
  identical to the one in wit/ (the component only carries what it uses, so: a subset);
- every import must be a `rmq:listener` interface of the world, or a WASI interface matched by
  one of the comma-separated ALLOWED_WASI prefixes (e.g. `wasi:io/,wasi:cli/`; empty: none).

Prints the component's WASI imports (comma-separated, `-` for none) on success; exits 1 with the
reasons otherwise.
"""

import re
import subprocess
import sys


def wit_text(wasm_tools, path):
    return subprocess.run(
        [wasm_tools, "component", "wit", path], check=True, capture_output=True, text=True
    ).stdout


def strip(text):
    """Drops doc comments and blank lines."""
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("//")]


def listener_package(lines):
    """Returns (version, {interface: set(items)}, [world imports], [world exports]) of the
    `rmq:listener` package and the first world in `lines` (output of `wasm-tools component wit`)."""
    version, interfaces, imports, exports = None, {}, [], []
    i, in_pkg, world_depth, seen_world = 0, False, 0, False
    while i < len(lines):
        ln = lines[i]
        if world_depth > 0:
            if world_depth == 1:
                m = re.match(r"(import|export) ([^;:]+:[^;]+|[a-z0-9-]+)\s*(;|:)", ln)
                if m:
                    (imports if m.group(1) == "import" else exports).append(m.group(2).strip())
            world_depth += ln.count("{") - ln.count("}")
            i += 1
            continue
        if ln.startswith("package "):
            m = re.match(r"package rmq:listener@([^ ;{]+)\s*(\{|;)", ln)
            in_pkg = m is not None
            if m:
                version = m.group(1)
        elif ln.startswith("world ") and not seen_world:
            seen_world, world_depth = True, 1
        elif in_pkg and (m := re.match(r"interface ([a-z0-9-]+) \{", ln)):
            name, items, depth, cur = m.group(1), set(), 0, []
            i += 1
            while depth > 0 or lines[i] != "}":
                cur.append(lines[i])
                depth += lines[i].count("{") - lines[i].count("}")
                if depth == 0 and (lines[i].endswith(";") or lines[i].endswith("}")):
                    item = " ".join(cur)
                    if not item.startswith("use "):
                        items.add(item)
                    cur = []
                i += 1
            interfaces[name] = items
        i += 1
    return version, interfaces, imports, exports


def main():
    wasm_tools, wit_dir, component, allowed = sys.argv[1:5]
    allowed = [p for p in allowed.split(",") if p]
    w_version, w_ifaces, w_imports, _ = listener_package(strip(wit_text(wasm_tools, wit_dir)))
    c_version, c_ifaces, c_imports, c_exports = listener_package(strip(wit_text(wasm_tools, component)))

    errors = []
    handler = f"rmq:listener/handler@{w_version}"
    if handler not in c_exports:
        errors.append(f"does not export {handler} (exports: {', '.join(c_exports) or 'none'})")
    if c_version != w_version:
        errors.append(f"built against rmq:listener@{c_version}, wit/ is @{w_version}")
    for name, items in c_ifaces.items():
        if name not in w_ifaces:
            errors.append(f"interface {name} is not in wit/")
            continue
        for item in sorted(items - w_ifaces[name]):
            errors.append(f"{name}: `{item}` differs from wit/")
    if "consume: func" not in " ".join(c_ifaces.get("handler", [])):
        errors.append("handler has no consume function")
    world_ifaces = {f"rmq:listener/{n}@{w_version}" for n in w_ifaces}
    wasi = []
    for imp in c_imports:
        if imp in world_ifaces:
            continue
        if imp.startswith("wasi:") and any(imp.startswith(p) for p in allowed):
            wasi.append(imp)
            continue
        errors.append(f"imports {imp}, which the world does not offer")
    if errors:
        print(f"{component}: not a listener component:", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        sys.exit(1)
    print(",".join(i.split("/", 1)[0] + "/" + i.split("/", 1)[1].split("@")[0] for i in wasi) or "-")


if __name__ == "__main__":
    main()
