"""``make matrix``: every defence of lesson 7 against every attack of lesson 6 and a clean model.

Writes ``results/detection_matrix.json`` (every cell, its verdict, the provenance). Lesson 7 shows it.
"""

from helpers.matrix import main

if __name__ == "__main__":
    raise SystemExit(main())
