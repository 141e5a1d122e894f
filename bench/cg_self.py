#!/usr/bin/env python3
"""The functions a callgrind dump's instructions are spent in (self cost, calls excluded), most
first, divided by a request count: the exclusive half of bench/run.sh --profile's profiles
(callgrind_annotate 3.19 attributes a zeroed-then-dumped part's self cost to its root).
Usage: cg_self.py DUMP REQUESTS [TOP]"""
import re
import sys
from collections import Counter


def main() -> int:
    path, requests = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    names: dict[str, str] = {}
    self_cost: Counter[str] = Counter()
    fn = "?"
    after_calls = False
    for line in open(path, encoding="utf-8", errors="replace"):
        if line.startswith("fn="):
            fn = resolve(names, line[3:].strip())
            continue
        if line.startswith(("cfn=", "cfi=", "cfl=", "cob=", "ob=", "fl=", "fi=", "fe=")):
            if line.startswith("cfn="):
                resolve(names, line[4:].strip())
            continue
        if line.startswith("calls="):
            after_calls = True  # the next cost line is the call's inclusive cost
            continue
        if line[:1].isdigit() or line[:1] in "+-*":
            parts = line.split()
            if len(parts) >= 2:
                if after_calls:
                    after_calls = False
                else:
                    self_cost[fn] += int(parts[1])
    total = sum(self_cost.values())
    print(f"{total / requests:,.0f} instructions per request, self cost by function:")
    for name, cost in self_cost.most_common(top):
        print(f"{cost / requests:10,.0f}  {100 * cost / total:5.1f}%  {name}")
    return 0


def resolve(names: dict[str, str], spec: str) -> str:
    m = re.match(r"\((\d+)\)(?:\s+(.*))?", spec)
    if not m:
        return spec
    if m.group(2):
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), spec)


if __name__ == "__main__":
    sys.exit(main())
