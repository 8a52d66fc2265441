"""Option-likelihood scoring of every attribute of one image in one batched pass, against one
``generate`` call per attribute, on the same tiny randomly initialised BLIP-2 (built locally).

Both answer all taxonomy questions for the same image crop. ``generate`` produces up to
``--new-tokens`` tokens per question (the answers would still need mapping onto the options);
the batched pass returns a distribution over each question's options. Median of ``--repeats``.

Prints a table and, last, ``ratio <generate time / batched time>`` (target >= 5).

    python bench/vlm_scoring.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch
    from PIL import Image
    from skimage.data import astronaut

    from annotate_anyone.annotation.labelers.vlm import OptionScorer
    from annotate_anyone.annotation.taxonomy import load_taxonomy
    from annotate_anyone.annotation.tiny import build_tiny_blip2

    torch.set_num_threads(args.threads)
    ckpt = build_tiny_blip2(tempfile.mkdtemp(prefix="aa-vlm-"))
    scorer = OptionScorer(ckpt)
    image = Image.fromarray(astronaut())
    cats = load_taxonomy().categories()
    questions = [(c.question, c.options) for c in cats]
    n_options = sum(len(o) for _, o in questions)
    scorer.score(image, questions[:2])  # warm up
    scorer.generate_answer(image, questions[0][0], args.new_tokens)

    def batched() -> float:
        t = time.perf_counter()
        scores = scorer.score(image, questions)
        assert len(scores) == len(questions)
        return time.perf_counter() - t

    def one_by_one() -> float:
        t = time.perf_counter()
        for q, _ in questions:
            scorer.generate_answer(image, q, args.new_tokens)
        return time.perf_counter() - t

    b = statistics.median(batched() for _ in range(args.repeats))
    g = statistics.median(one_by_one() for _ in range(args.repeats))
    print(f"tiny BLIP-2, {len(questions)} questions, {n_options} options, torch threads {args.threads}")
    print("| method | seconds per image | ms per question | output |")
    print("|---|---|---|---|")
    print(
        f"| batched option scoring (1 pass) | {b:.3f} | {1000 * b / len(questions):.1f} | distribution per question |"
    )
    print(f"| generate per question ({args.new_tokens} tokens) | {g:.3f} | {1000 * g / len(questions):.1f} |"
          " free text, still to map |")  # fmt: skip
    print(f"ratio {g / b:.2f}")


if __name__ == "__main__":
    main()
