#!/usr/bin/env python3
"""Lists Rust functions longer than a limit (default 80 lines) outside tests.

Usage: python3 scripts/long_fns.py [limit]. Exit status 1 when one is found. A function is
counted from its `fn` line to the line closing its body; functions inside `mod tests`, files
named tests.rs or under a tests/ or benches/ folder, and `#[test]` functions are skipped.
"""
import os
import re
import sys

LIMIT = int(sys.argv[1]) if len(sys.argv) > 1 else 80
FN = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)')
SKIP_DIRS = {"target", ".git", "node_modules", "tests", "benches", "fuzz_targets"}


def functions(lines):
    i = 0
    in_tests_from = None
    depth = 0
    while i < len(lines):
        line = lines[i]
        if re.match(r'^\s*mod tests\s*\{', line) or re.match(r'^\s*#\[cfg\(test\)\]\s*$', line) and i + 1 < len(lines) and 'mod ' in lines[i + 1]:
            return  # tests sit at the end of a file by house style
        m = FN.match(line)
        if m and not line.rstrip().endswith(';'):
            start = i
            depth = 0
            opened = False
            j = i
            while j < len(lines):
                code = re.sub(r'"(\\.|[^"\\])*"', '""', lines[j].split('//')[0])
                depth += code.count('{') - code.count('}')
                opened = opened or '{' in code
                if opened and depth <= 0:
                    break
                j += 1
            prev = lines[start - 1] if start else ''
            if '#[test]' not in prev and 'tokio::test' not in prev:
                yield m.group(6), start + 1, j - start + 1
            i = j + 1
            continue
        i += 1


found = False
for root, dirs, files in os.walk('.'):
    dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
    for f in files:
        if not f.endswith('.rs') or f == 'tests.rs':
            continue
        path = os.path.join(root, f)
        with open(path, encoding='utf-8') as fh:
            lines = fh.read().split('\n')
        for name, line, length in functions(lines):
            if length > LIMIT:
                found = True
                print(f"{path}:{line}: fn {name} is {length} lines")
sys.exit(1 if found else 0)
