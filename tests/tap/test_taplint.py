"""STILTS taplint against the running TAP service, on both backends: 0 errors (it exits 0 even with errors, so
the Totals line is read). Warnings and failures are printed for the record."""

import re
import shutil
import subprocess

from support import skip_or_fail


def test_taplint_reports_no_errors(tap):
    stilts = shutil.which("stilts")
    if stilts is None:
        skip_or_fail("stilts is not installed (apt-get install stilts)")
    run = subprocess.run([stilts, "taplint", f"tapurl={tap.url}", "report=EWF", "maxrepeat=20"],
                         capture_output=True, text=True, timeout=120)
    output = run.stdout + run.stderr
    totals = re.search(r"Totals: Errors: (\d+); Warnings: (\d+); Failures: (\d+)", output)
    assert totals, output[-3000:]
    reports = [line for line in output.splitlines() if re.match(r"^[EWF]-[A-Z]{3}-", line)]
    print(f"taplint on {tap.backend}: {totals.group(0)}")
    for line in reports:
        print("  ", line)
    errors = [line for line in reports if line.startswith("E-")]
    assert int(totals.group(1)) == 0, "\n".join(errors)
    assert tap.alive()
