"""Print the catch table of the seeded-fault catalogue.

OMP_NUM_THREADS=1 .venv/bin/python tests/faults/run.py [NAME-SUBSTRING ...]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faults import FAULTS, Suite, table


def main(argv: list[str]) -> int:
    chosen = [f for f in FAULTS if not argv or any(a in f.name for a in argv)]
    with tempfile.TemporaryDirectory(prefix="dlgate-faults-") as tmp:
        suite = Suite(Path(tmp))
        start = time.perf_counter()
        healthy = suite.healthy()
        rows = []
        for fault in chosen:
            rows.append(suite.run(fault))
            print(f"  {fault.name}: {rows[-1].caught_by or 'MISSED'}", file=sys.stderr)
        print(table(rows, healthy))
        print(f"({time.perf_counter() - start:.0f}s)")
        for row in rows:
            for check_id in row.failed + row.errors:
                r = row.results[check_id]
                print(f"\n[{row.fault.name}] {check_id} {r.outcome.value}: {r.message}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
