#!/usr/bin/env python3
"""The shared library exports exactly the public API.

Usage: check_exports.py LIBDASECV_SO HEADER_DIR

The public API is every function declared in the installed headers
(HEADER_DIR/*.h); each declaration must carry DSV_API. `nm -D --defined-only`
on the library must list exactly those functions: a missing one is a header
without an implementation, an extra one an internal symbol that leaked (a
helper without `static`, or DSV_API on something internal). Exits non-zero
with both lists on a mismatch.
"""
import glob
import os
import re
import subprocess
import sys


def declared_functions(header_dir):
    """(names of declared functions, declarations lacking DSV_API)."""
    names, unmarked = set(), []
    for path in sorted(glob.glob(os.path.join(header_dir, '*.h'))):
        text = open(path, encoding='utf-8').read()
        text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)   # comments
        text = re.sub(r'//[^\n]*', ' ', text)
        text = re.sub(r'^\s*#(?:[^\n]*\\\n)*[^\n]*', ' ', text, flags=re.M)  # directives
        # C++ linkage blocks wrap whole headers (their closing brace is then
        # unmatched and ignored below)
        text = re.sub(r'extern\s+"C"\s*\{', ' ', text)
        # top-level statements end at ';' or open a body ('{'); bodies of
        # static inline functions and struct fields are dropped
        depth, stmt, stmts = 0, [], []
        for ch in text:
            if ch == '{':
                if depth == 0:
                    stmts.append(''.join(stmt))
                    stmt = []
                depth += 1
            elif ch == '}':
                depth = max(depth - 1, 0)
            elif depth == 0:
                if ch == ';':
                    stmts.append(''.join(stmt))
                    stmt = []
                else:
                    stmt.append(ch)
        for s in stmts:
            s = ' '.join(s.split())
            if not s or re.match(r'(typedef|static)\b', s):
                continue
            # a function declaration: the first '(' follows its name
            m = re.match(r'[^()]*?\b(dsv_\w+)\s*\(', s)
            if not m:
                continue
            names.add(m.group(1))
            if not re.match(r'DSV_API\b', s):
                unmarked.append('%s: %s' % (os.path.basename(path), m.group(1)))
    return names, unmarked


def exported(lib):
    out = subprocess.run(['nm', '-D', '--defined-only', lib], check=True,
                         capture_output=True, text=True).stdout
    syms = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            syms.add(parts[2].split('@')[0])
    return syms


def main():
    lib, header_dir = sys.argv[1], sys.argv[2]
    api, unmarked = declared_functions(header_dir)
    syms = exported(lib)
    ok = True
    if len(api) < 50:
        print('only %d functions found in %s: the header parser is broken' %
              (len(api), header_dir))
        ok = False
    if unmarked:
        print('public declarations without DSV_API:\n  ' + '\n  '.join(unmarked))
        ok = False
    extra, missing = sorted(syms - api), sorted(api - syms)
    if extra:
        print('exported but not in the public headers:\n  ' + '\n  '.join(extra))
        ok = False
    if missing:
        print('declared in the public headers but not exported:\n  ' +
              '\n  '.join(missing))
        ok = False
    print('%d public functions, %d exported symbols' % (len(api), len(syms)))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
