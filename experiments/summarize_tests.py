#!/usr/bin/env python3
"""Turns ctest's JUnit output into the Markdown table committed with each device run.

usage: summarize_tests.py JUNIT.xml > tests.md
One row per GoogleTest suite: passed, failed, skipped; then every failure and every
skip reason, so a reader sees what ran and what did not.
"""
import collections
import sys
import xml.etree.ElementTree as ET


def main(path):
    root = ET.parse(path).getroot()
    rows = collections.OrderedDict()
    failures, skips = [], collections.Counter()
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        # ctest names tests after the gtest case; group by the gtest suite.
        key = name.split(".")[0].split("/")[-1] if "." in name else name
        r = rows.setdefault(key, [0, 0, 0, 0.0])
        r[3] += float(case.get("time", 0) or 0)
        status = case.get("status", "run")
        if case.find("failure") is not None or status == "fail":
            r[1] += 1
            failures.append(name)
        elif case.find("skipped") is not None or status in ("notrun", "disabled"):
            r[2] += 1
            out = (case.findtext("system-out") or "")
            reason = "skipped"
            for line in out.splitlines():
                if "skipped:" in line:
                    reason = line.strip()
                    break
            skips[reason] += 1
        else:
            r[0] += 1
    tot = [sum(r[i] for r in rows.values()) for i in range(3)]
    print("| gtest suite | passed | failed | skipped | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for suite, r in rows.items():
        print(f"| {suite} | {r[0]} | {r[1]} | {r[2]} | {r[3]:.1f} |")
    print(f"| **total** | **{tot[0]}** | **{tot[1]}** | **{tot[2]}** | |")
    print()
    print(f"{tot[0]} passed, {tot[1]} failed, {tot[2]} skipped")
    if failures:
        print("\nFailures:\n")
        for f in failures:
            print(f"- {f}")
    if skips:
        print("\nSkip reasons:\n")
        for reason, n in skips.items():
            print(f"- {n} x {reason}")


if __name__ == "__main__":
    main(sys.argv[1])
