"""JUnit XML from a gate report (verikit-gate/1 dict): one testcase per check, one per baseline comparison.

verified → passed; falsified → <failure> (the counterexample's evidence in the text); unknown / timeout
→ <skipped> with the reason; error → <error>. Regressions against the baseline are failures of the
"baseline" suite.
"""

from __future__ import annotations

from verikit.core import output
import json
import xml.etree.ElementTree as ET
from pathlib import Path


def _testcase(suite: ET.Element, classname: str, name: str, seconds: float) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")


def _checks_suite(report: dict) -> ET.Element:
    suite = ET.Element("testsuite", name=f"verikit gate: {report['policy']['path']}")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total = 0.0
    for check in report["checks"]:
        case = _testcase(suite, f"verikit.{check['property']}", check["id"], check["seconds"])
        counts["tests"] += 1
        total += check["seconds"]
        verdict, message = check["verdict"], check["message"]
        if verdict == "falsified":
            counts["failures"] += 1
            failure = ET.SubElement(case, "failure", message=message, type="falsified")
            evidence = check.get("counterexample")
            failure.text = (json.dumps(check.get("metrics"), indent=2) if evidence is None
                            else "counterexample replayed through onnxruntime:\n" + json.dumps(evidence))
        elif verdict in ("unknown", "timeout"):
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=f"{verdict}: {message}")
        elif verdict == "error":
            counts["errors"] += 1
            ET.SubElement(case, "error", message=message, type="error")
        ET.SubElement(case, "system-out").text = message
    suite.attrib.update({k: str(v) for k, v in counts.items()}, time=f"{total:.3f}")
    return suite


def _baseline_suite(report: dict) -> ET.Element | None:
    baseline = report.get("baseline")
    if not baseline:
        return None
    suite = ET.Element("testsuite", name=f"verikit baseline: {baseline['path']}")
    regressions: dict[str, list[dict]] = {}
    for regression in baseline["regressions"]:
        regressions.setdefault(regression["id"], []).append(regression)
    compared = [c["id"] for c in report["checks"]
                if c["id"] not in baseline["not_comparable"] and c["id"] not in baseline["new"]]
    for check_id in compared:
        case = _testcase(suite, "verikit.baseline", check_id, 0.0)
        for regression in regressions.get(check_id, []):
            ET.SubElement(case, "failure", message=regression["message"], type=regression["kind"])
    for check_id in baseline["not_comparable"]:
        case = _testcase(suite, "verikit.baseline", check_id, 0.0)
        ET.SubElement(case, "skipped", message="the property's definition changed since the baseline")
    failures = sum(1 for case in suite if case.find("failure") is not None)
    skipped = len(baseline["not_comparable"])
    suite.attrib.update(tests=str(len(suite)), failures=str(failures), errors="0", skipped=str(skipped), time="0")
    return suite


def to_xml(report: dict) -> str:
    """The JUnit XML document for a gate report."""
    root = ET.Element("testsuites", name="verikit gate")
    suites = [s for s in (_checks_suite(report), _baseline_suite(report)) if s is not None]
    for suite in suites:
        root.append(suite)
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(s.get(key, "0")) for s in suites)))
    root.set("time", f"{report['seconds']:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write(report: dict, path: str | Path) -> Path:
    return output.write_text(path, to_xml(report))
