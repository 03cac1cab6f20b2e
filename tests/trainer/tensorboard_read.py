"""Reads a TensorBoard log directory with the tensorboard package and checks expected scalars.

usage: tensorboard_read.py LOGDIR TAG:STEP:VALUE [...]

Checks that the directory's one event file starts with file_version "brain.Event:2" (read by
tensorboard's event_file_loader, which verifies the record CRCs) and that EventAccumulator finds
each TAG with a scalar VALUE (to f32 precision) at STEP. Exit 0 when all hold, 1 on a mismatch
(printed), 3 when the tensorboard package cannot be imported (the caller decides whether that is
a skip or a failure).
"""
import glob
import math
import os
import sys


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        from tensorboard.backend.event_processing import event_accumulator, event_file_loader
    except ImportError as e:
        print(f"tensorboard is not importable by {sys.executable}: {e}")
        return 3
    logdir, expected = argv[0], argv[1:]
    files = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    if len(files) != 1:
        print(f"{logdir}: expected one event file, found {files}")
        return 1
    events = list(event_file_loader.LegacyEventFileLoader(files[0]).Load())
    if not events or events[0].file_version != "brain.Event:2":
        print(f"{files[0]}: the first event is not file_version brain.Event:2: {events[:1]}")
        return 1

    acc = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()[event_accumulator.SCALARS]
    failures = []
    for item in expected:
        tag, step, value = item.rsplit(":", 2)
        step, value = int(step), float(value)
        if tag not in tags:
            failures.append(f"tag {tag!r} missing (tags: {sorted(tags)})")
            continue
        found = [e.value for e in acc.Scalars(tag) if e.step == step]
        if len(found) != 1:
            failures.append(f"{tag} at step {step}: {len(found)} scalars")
        elif not math.isclose(found[0], value, rel_tol=1e-6, abs_tol=1e-30):
            failures.append(f"{tag} at step {step}: read {found[0]!r}, expected {value!r}")
    for f in failures:
        print(f)
    if not failures:
        print(f"ok: {len(expected)} scalars in {len(events)} events read by tensorboard")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
