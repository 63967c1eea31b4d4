"""Time to check an image folder before training, and to the first batch.

python benchmarks/folder_check.py FOLDER [--image-size 32]

Side by side in one run, each with a fresh cache: every file decoded
(`check="decode"`, what every run did before), header-and-end checks
(`check="headers"`, the default) cold, then warm (a rerun or a resume), and
the time from `load_datasets` to the first training batch.
"""

import argparse
import os
import tempfile
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()
    os.environ["KERAS_VIT_HOME"] = tempfile.mkdtemp(prefix="folder-check-")

    from keras_vit import data
    from keras_vit.image_files import find_bad_images

    started = time.perf_counter()
    files, _, _ = data._list_folder(args.folder)
    print(f"listing {len(files)} files: {time.perf_counter() - started:.1f} s")
    rows = []
    for name, check in (
        ("decode every file", "decode"),
        ("headers, cold cache", "headers"),
        ("headers, warm cache", "headers"),
    ):
        started = time.perf_counter()
        bad = find_bad_images(
            files,
            args.folder,
            check=check,
            progress=False,
        )
        seconds = time.perf_counter() - started
        rows.append((name, seconds, len(bad)))
    base = rows[0][1]
    print(f"{'check':<22}{'seconds':>9}{'speed-up':>10}{'bad':>6}")
    for name, seconds, bad in rows:
        print(f"{name:<22}{seconds:>9.1f}{base / seconds:>9.1f}x{bad:>6}")
    for check in ("decode", "headers"):
        os.environ["KERAS_VIT_HOME"] = tempfile.mkdtemp(prefix="folder-check-")
        started = time.perf_counter()
        datasets = data.load_datasets(
            args.folder,
            image_size=args.image_size,
            batch_size=128,
            check_images=check,
            progress=False,
        )
        ready = time.perf_counter()
        next(iter(datasets.train))
        first = time.perf_counter()
        print(
            f"check={check}: load_datasets {ready - started:.1f} s, first "
            f"training batch after {first - started:.1f} s"
        )


if __name__ == "__main__":
    main()
