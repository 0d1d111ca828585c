"""Throughput of an SSL feature set on a corpus's files, in this process (no cache, no workers).

    python -m benchmark.features._ssl_speed --features hf:/path/to/model --corpus emodb --limit 60

Prints the audio length, CPU seconds per hour of audio (all of torch's threads; less sensitive to
other load on a shared machine than wall time), wall seconds, peak resident memory of the process,
and batched vs one-by-one time, alternated pass by pass so both see the same machine load.
The model is loaded and run once before timing.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def timed(fn) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def main(argv: list[str] | None = None) -> None:
    from ..audio import TARGET_SR, load_audio
    from ..corpora import open_corpus
    from . import get_feature_set
    from .base import package_version

    parser = argparse.ArgumentParser(prog="python -m benchmark.features._ssl_speed", description=__doc__.split("\n")[0])
    parser.add_argument("--features", required=True, help="wav2vec2, hubert, wavlm or hf:<hub id or folder>")
    parser.add_argument("--corpus", default="emodb")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--limit", type=int, default=60, help="the first N utterances")
    parser.add_argument("--repeat", type=int, default=2, help="alternated passes of each mode")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    import torch

    feature_set = get_feature_set(args.features, batch_size=args.batch_size, device=args.device)
    signals = [load_audio(u.path) for u in open_corpus(args.corpus, args.data_dir).utterances()[: args.limit]]
    audio_s = sum(len(s) for s in signals) / TARGET_SR
    encoder = feature_set.encoder()
    feature_set.extract_batch(signals[:2])  # warm-up: weights paged in, kernels chosen
    params = sum(p.numel() for p in encoder.model.parameters())
    print(f"{args.features}: {params / 1e6:.1f}M parameters on {encoder.device} (torch {package_version('torch')}, "
          f"{torch.get_num_threads()} threads); {len(signals)} files, {audio_s:.1f} s of audio; "
          f"padded batches: {'yes (attention mask)' if encoder.masked else 'no (group norm: equal lengths only)'}")
    modes = {"one by one": lambda: [feature_set.extract(s) for s in signals],
             f"batches of {args.batch_size}": lambda: feature_set.extract_batch(signals)}
    times: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    for _ in range(args.repeat):
        for mode, fn in modes.items():
            times[mode].append(timed(fn))
            cpu, wall = times[mode][-1]
            print(f"  {mode}: {cpu:.1f} CPU s, {wall:.1f} wall s -> {cpu / audio_s * 3600 / 60:.1f} CPU min "
                  f"and {wall / audio_s * 3600 / 60:.1f} wall min per hour of audio", flush=True)
    one, batched = (np.median([w for _, w in times[mode]]) for mode in modes)
    print(f"batched vs one by one (median wall of {args.repeat} alternated passes): {one / batched:.2f}x; "
          f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
