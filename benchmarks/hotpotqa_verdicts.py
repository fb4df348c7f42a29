"""The choice split's yes/no comparisons as a HotpotQA-format file of their own.

Verdict answers ("The answer is no.") are where citations went missing on held-out data,
and the choice split had one of them (dev 44); this gathers every yes/no question of the
HotpotQA dev ranges choices may be made on (dev 62-199 and 240-399; 200-239 and 400-585
are held out), in dev order, so cite-eval can record them as one range.

    python benchmarks/hotpotqa_verdicts.py --data ../shared/data/hotpotqa/dev.json \\
        --out benchmarks/data/hotpotqa-dev-choice-verdicts.json
"""

from __future__ import annotations

import argparse
import json

CHOICE_RANGES = (range(62, 200), range(240, 400))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(args.data, encoding="utf-8") as f:
        dev = json.load(f)
    chosen = [dev[i] for r in CHOICE_RANGES for i in r if dev[i]["answer"].strip().lower() in ("yes", "no")]
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(chosen, f, ensure_ascii=False)
    print(f"{len(chosen)} yes/no questions -> {args.out}")


if __name__ == "__main__":
    main()
