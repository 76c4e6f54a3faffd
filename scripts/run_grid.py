"""``make grid``: BadNets' 90 single-target attacks on Ray (local workers, or the cluster at $RAY_ADDRESS).

Writes ``results/grid.json`` (key numbers, every pair, provenance). Lesson 6 shows it.
"""

from helpers.grid import main

if __name__ == "__main__":
    raise SystemExit(main())
