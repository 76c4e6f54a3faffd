"""Run the whole series top to bottom as a student would, then render the slides.

Each lesson is executed in a fresh kernel with its working directory in
``notebooks/`` (so it writes ``figures/``, ``results/`` and ``artifacts/`` as
it would in JupyterLab), and its outputs and widget state are saved back into
the notebook. The terminal shows one progress bar over the lessons and, at
the end, a summary: each lesson's wall time, the chosen poisoning rate, clean
accuracy and attack success rate. Everything else the kernels print (Jupyter's
and TensorFlow's own log lines) goes to a log file whose path is printed.

Only one lesson runs at a time, but the next lesson's kernel is started (and
imports TensorFlow, silently, outside the notebook's history) while the
current one runs, so the series does not wait for eight kernel start-ups;
each lesson's time is counted from its turn. ``--one-kernel-at-a-time``
starts each kernel only when its turn comes.

By default the run regenerates the committed results (``results/*.json``,
``BADNETS_RESULTS_UPDATE=1``) and lists every key number that moved.

Usage: ``python scripts/run_series.py [--no-slides] [--output-dir DIR] [--log FILE] [--keep-results]
[--lessons NN ...] [--one-kernel-at-a-time] [--times-json FILE]``
(``--output-dir`` writes the executed notebooks there instead of in place).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "results"


def execute(path: Path, out: Path, timeout: int = 900) -> float:
    """Execute one notebook (widget state stored) and write it to ``out``; return the wall time."""
    import nbformat
    from nbclient import NotebookClient

    from helpers.io import atomic_write_text

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    seconds = time.perf_counter() - start
    atomic_write_text(out, nbformat.writes(nb) + "\n")
    return seconds


#: Run in a lesson's kernel before its turn, silently and outside its history: the import every lesson's first cell
#: starts with (TensorFlow, quietly). It changes no output, no seed and no execution count.
PREWARM = "from helpers._tf import import_tensorflow as _quiet_tf\n_quiet_tf()\ndel _quiet_tf"


def _lesson_worker(path: str, out: str, go, abort, results, timeout: int = 900) -> None:
    """A child process for one lesson: start its kernel and import TensorFlow there, wait for ``go``, execute.

    It puts ``(name, seconds, None)`` on ``results`` when done (``seconds`` counted from ``go``), or
    ``(name, None, error text)``. If ``abort`` is set when ``go`` comes, it shuts its kernel down and runs nothing.
    """
    import asyncio
    import traceback

    import nbformat
    from nbclient import NotebookClient

    from helpers.io import atomic_write_text

    name = Path(path).name
    nb = nbformat.read(path, as_version=4)
    turn = {}

    async def on_start(notebook):
        reply = await client.async_wait_for_reply(client.kc.execute(PREWARM, silent=True, store_history=False))
        if reply is None or reply["content"].get("status") != "ok":
            raise RuntimeError(f"{name}: the kernel could not import TensorFlow: {reply and reply['content']}")
        await asyncio.get_running_loop().run_in_executor(None, go.wait)
        if abort.is_set():
            client.nb.cells = []  # an earlier lesson failed: run nothing, let nbclient shut the kernel down
        turn["start"] = time.perf_counter()

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(NOTEBOOKS)}}, on_notebook_start=on_start)
    try:
        client.execute()
        if abort.is_set():
            return
        seconds = time.perf_counter() - turn["start"]
        atomic_write_text(out, nbformat.writes(nb) + "\n")
        results.put((name, seconds, None))
    except BaseException:  # noqa: BLE001 - reported to the parent, which stops the series
        results.put((name, None, traceback.format_exc()))


def execute_overlapped(lessons: list[Path], outs: list[Path], on_done) -> dict[str, float]:
    """Execute ``lessons`` in order, each in a fresh kernel, starting the next lesson's kernel during the current one.

    Only one lesson runs at a time: the next one's kernel starts and imports TensorFlow (about 4 s of a 2-core
    laptop's time) while the current lesson runs, then waits for its turn. Outputs are the same as
    :func:`execute`'s. Returns each lesson's wall time counted from its turn; ``on_done(name, seconds)`` is
    called as each one ends. The first failure stops the series (``RuntimeError`` with the lesson's traceback).
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()

    def launch(nb: Path, out: Path):
        go, abort = ctx.Event(), ctx.Event()
        proc = ctx.Process(target=_lesson_worker, args=(str(nb), str(out), go, abort, results), daemon=False)
        proc.start()
        return proc, go, abort

    times: dict[str, float] = {}
    nxt = launch(lessons[0], outs[0])
    nxt[1].set()
    for i, nb in enumerate(lessons):
        proc, _, _ = current = nxt
        nxt = launch(lessons[i + 1], outs[i + 1]) if i + 1 < len(lessons) else None
        while True:
            try:
                name, seconds, error = results.get(timeout=5)
                break
            except Exception:  # queue.Empty: check the lesson's process is still there
                if not proc.is_alive():
                    name, seconds, error = nb.name, None, f"the process running {nb.name} died (exit code {proc.exitcode})"
                    break
        proc.join()
        if error is not None:
            if nxt is not None:
                nxt[2].set()
                nxt[1].set()
                nxt[0].join()
            raise RuntimeError(f"{name} failed:\n{error}")
        times[name] = seconds
        on_done(name, seconds)
        if nxt is not None:
            nxt[1].set()
    return times


@contextlib.contextmanager
def output_to_log(log: Path):
    """Point file descriptors 1 and 2 (ours and the kernels') at ``log``; yield a stream to the terminal."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)
        terminal.close()


def read_all_results() -> dict[str, dict]:
    out = {}
    for p in sorted(RESULTS.glob("*.json")):
        with contextlib.suppress(ValueError):
            out[p.stem] = json.loads(p.read_text())
    return out


def moved(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """One line per key number whose committed value changed in this run."""
    lines = []
    for lesson, values in sorted(after.items()):
        old = before.get(lesson, {})
        for key, v in sorted(values.items()):
            if old.get(key) != v:
                lines.append(f"  {lesson}.{key}: {old.get(key, '(new)')} -> {v}")
    return lines


def summary() -> str:
    """The chosen rate and its test numbers, read from lesson 3's fresh results."""
    out = Path(os.environ.get("BADNETS_RESULTS_DIR") or RESULTS) / "03_poisoning_rate_sweep.json"
    r = json.loads(out.read_text())
    return (f"chosen poisoning rate {r['chosen_rate']:.2%} ({r['chosen_n_poisoned']} images): "
            f"clean test accuracy {r['test_clean_accuracy']:.2%}, attack success rate {r['test_asr']:.2%}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-slides", action="store_true", help="skip rendering the slides")
    p.add_argument("--output-dir", type=Path, help="write executed notebooks here instead of in place")
    p.add_argument("--log", type=Path, default=ROOT / ".cache" / "logs" / "series.log",
                   help="file for everything the kernels print (default %(default)s)")
    p.add_argument("--keep-results", action="store_true",
                   help="check against results/*.json instead of regenerating them (fresh ones go to $BADNETS_RESULTS_DIR)")
    p.add_argument("--lessons", nargs="*", help="run only these lessons (file names or NN prefixes)")
    p.add_argument("--one-kernel-at-a-time", action="store_true",
                   help="start each lesson's kernel only when the previous lesson has ended (slower; the old way)")
    p.add_argument("--times-json", type=Path,
                   help="also write each lesson's wall time, {lesson stem: seconds}, to this JSON file")
    args = p.parse_args(argv)
    from tqdm import tqdm

    lessons = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.lessons:
        lessons = [nb for nb in lessons if any(nb.name.startswith(s) for s in args.lessons)]
    if not args.keep_results:
        os.environ["BADNETS_RESULTS_UPDATE"] = "1"
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # the kernel's debugger warning
    before = read_all_results()
    times = {}
    total = time.perf_counter()
    with output_to_log(args.log) as terminal:
        print(f"raw output of the kernels: {args.log}", file=terminal)
        bar = tqdm(total=len(lessons), desc="lessons", unit="lesson", file=terminal, dynamic_ncols=True)
        outs = [(args.output_dir / nb.name) if args.output_dir else nb for nb in lessons]
        for out in outs:
            out.parent.mkdir(parents=True, exist_ok=True)

        def done(name: str, seconds: float) -> None:
            times[name] = seconds
            print(f"{name}: {seconds:.1f} s", flush=True)
            bar.update(1)
            bar.set_postfix_str(Path(name).stem)

        if args.one_kernel_at_a_time:
            for nb, out in zip(lessons, outs):
                done(nb.name, execute(nb, out))
        elif lessons:
            execute_overlapped(lessons, outs, done)
        bar.close()
        if not args.no_slides:
            import render_slides

            render_slides.main(["--out", str(ROOT / "slides"),
                                *[str((args.output_dir or NOTEBOOKS) / nb.name) for nb in lessons]])
            print(f"slides written to {ROOT / 'slides'}", file=terminal)
    for name, seconds in times.items():
        print(f"{name:40s} {seconds:6.1f} s")
    if args.times_json:
        from helpers.io import atomic_write_json

        atomic_write_json(args.times_json, {Path(name).stem: seconds for name, seconds in times.items()})
    print(f"{'all lessons':40s} {time.perf_counter() - total:6.1f} s")
    if not args.keep_results:
        changes = moved(before, read_all_results())
        print("\n".join(["key numbers that moved in results/:", *changes]) if changes else "results/: no key number moved")
    if any(nb.name.startswith("03_") for nb in lessons):
        print(summary())
    if not args.output_dir and not args.keep_results:  # the lessons and results/ changed in place: so does the guide
        import make_instructor

        make_instructor.main([])
    print(f"raw output of the kernels: {args.log}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
