"""Option-likelihood scoring of all 69 attribute questions of one person crop (shared image and question
prefixes computed once, values batched), against one ``generate`` call per question, on the same tiny
randomly initialised checkpoint of each VLM family (built locally from configs; nothing downloaded).

Both see the same crop (the astronaut photo's person box plus margin) and answer all taxonomy questions.
``generate`` produces up to ``--new-tokens`` tokens per question (answers would still need mapping onto
the allowed values); the scorer returns a distribution over each question's values. Median of
``--repeats`` runs per method. CPU, fp32, ``--threads`` torch threads.

Prints a table per family and, last, ``ratio X``: the smallest ratio (generate time / scoring time) over
the families run (target >= 10).

    python bench/vlm_scoring.py [--families qwen2_5_vl,llava,idefics3,blip2,instructblip]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default="qwen2_5_vl,llava,idefics3,blip2,instructblip")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch
    from skimage.data import astronaut

    from annotate_anyone.annotation.labelers.vlm import OptionScorer, crop_person
    from annotate_anyone.annotation.taxonomy import load_taxonomy
    from annotate_anyone.annotation.tiny_vlm_checkpoints import build_tiny_vlm

    torch.set_num_threads(args.threads)
    crop = crop_person(astronaut(), (120, 20, 420, 512), margin=0.05)  # the astronaut: box plus margin
    questions = [(c.question, c.options) for c in load_taxonomy().categories()]
    n_options = sum(len(o) for _, o in questions)
    rows, ratios = [], []
    for family in args.families.split(","):
        scorer = OptionScorer(build_tiny_vlm(family, tempfile.mkdtemp(prefix=f"aa-vlm-{family}-")))
        scorer.score(crop, questions)  # warm up (also tokenizes the prompts once, as a labeler would)
        scorer.generate_answer(crop, questions[0][0], args.new_tokens)

        def batched() -> float:
            t = time.perf_counter()
            scores = scorer.score(crop, questions)  # noqa: B023
            assert len(scores) == len(questions)
            return time.perf_counter() - t

        def one_by_one() -> float:
            t = time.perf_counter()
            for q, _ in questions:
                scorer.generate_answer(crop, q, args.new_tokens)  # noqa: B023
            return time.perf_counter() - t

        b = statistics.median(batched() for _ in range(args.repeats))
        g = statistics.median(one_by_one() for _ in range(args.repeats))
        rows.append((family, b, g))
        ratios.append(g / b)
    print(f"tiny random checkpoints, one crop {crop.size[0]}x{crop.size[1]}, {len(questions)} questions, "
          f"{n_options} options, torch threads {args.threads}, fp32 CPU")  # fmt: skip
    print(f"| family | option scoring, s/person | generate per question ({args.new_tokens} tokens), s/person | ratio |")
    print("|---|---|---|---|")
    for family, b, g in rows:
        print(f"| {family} | {b:.3f} | {g:.3f} | {g / b:.1f} |")
    print(f"ratio {min(ratios):.2f}")


if __name__ == "__main__":
    main()
