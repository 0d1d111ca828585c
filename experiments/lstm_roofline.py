"""How close attn_blstm's BLSTM already runs to this CPU's matrix-multiply rate (issue 8: the
1.5x target for attn_blstm at its fixed 157 frames, where length buckets remove no padding).

At 157 frames for every utterance, the old path (the whole set padded to its longest) and the
length buckets run the same LSTM on the same shapes; a speed-up can only come from doing that
work faster. This measures, in one process with ser-bench's thread settings (one intra-op thread,
two inter-op threads on 2 cores):

1. the rate of the LSTM's own matrix products (a (32, 256) x (256, 1024) step chained in a
   ``tf.function``): what a perfect LSTM kernel on this core could reach;
2. one direction of Keras' LSTM (units 256, 157 steps, 46 features, batch 32), forward and
   backward, as ser-bench trains it; its FLOPs per second against (1) bound what any kernel,
   pipeline or compiler change could gain on this work;
3. the same with XLA (``jit_compile``) and with Keras' ``mixed_bfloat16`` policy (this CPU has
   AVX-512 BF16), as ratios against (2).

    python experiments/lstm_roofline.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

BATCH, FRAMES, FEATURES, UNITS = 32, 157, 46, 256


def lstm_flops() -> float:
    """Multiply-adds of one LSTM direction over a batch, forward + backward (backward = 2x forward:
    gradients for both the inputs and the weights)."""
    per_step = 2 * BATCH * (FEATURES + UNITS) * 4 * UNITS
    return 3 * per_step * FRAMES


def timed(step, rounds: int, calls: int = 5) -> float:
    step()  # trace and warm up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            step()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def matmul_rate(tf, rounds: int) -> float:
    a = tf.random.normal((BATCH, UNITS))
    b = tf.random.normal((UNITS, 4 * UNITS))

    @tf.function
    def chain(a, b):
        for _ in range(FRAMES):
            a = tf.matmul(a, b)[:, :UNITS]
        return a

    seconds = timed(lambda: chain(a, b).numpy(), rounds)
    return 2 * BATCH * UNITS * 4 * UNITS * FRAMES / seconds


def lstm_step(tf, keras, jit: bool = False):
    x = tf.random.normal((BATCH, FRAMES, FEATURES))
    layer = keras.layers.LSTM(UNITS, return_sequences=True)
    layer(x)

    def train(x):
        with tf.GradientTape() as tape:
            y = tf.cast(layer(x), tf.float32)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, layer.trainable_variables)

    step = tf.function(train, jit_compile=jit)
    return lambda: [g.numpy() for g in step(x)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    from benchmark.models.keras_base import configure_tensorflow

    configure_tensorflow()
    print(f"threads intra {tf.config.threading.get_intra_op_parallelism_threads()}, "
          f"inter {tf.config.threading.get_inter_op_parallelism_threads()}; LSTM {UNITS} units, "
          f"{FRAMES} frames, {FEATURES} features, batch {BATCH}; medians of {rounds} rounds")
    peak = matmul_rate(tf, rounds)
    print(f"matrix products of one step, chained: {peak / 1e9:.1f} GFLOP/s")
    keras_s = timed(lstm_step(tf, keras), rounds)
    rate = lstm_flops() / keras_s
    print(f"Keras LSTM, one direction, forward + backward: {keras_s * 1e3:.1f} ms per batch, "
          f"{rate / 1e9:.1f} GFLOP/s = {rate / peak:.0%} of the matrix-product rate; "
          f"a kernel at that rate would be at most {peak / rate:.2f}x faster")
    xla_s = timed(lstm_step(tf, keras, jit=True), rounds)
    print(f"the same with XLA (jit_compile): {xla_s * 1e3:.1f} ms per batch, {keras_s / xla_s:.2f}x")
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    bf16_s = timed(lstm_step(tf, keras), rounds)
    keras.mixed_precision.set_global_policy("float32")
    print(f"the same under mixed_bfloat16: {bf16_s * 1e3:.1f} ms per batch, {keras_s / bf16_s:.2f}x")


if __name__ == "__main__":
    main()
