"""Regenerate tests/data/qa_reference/: tiny QA checkpoints and transformers 4.57's QuestionAnsweringPipeline
outputs on them (transformers 5 removed that pipeline, so the expected outputs come from a separate venv).

    python3 -m venv /tmp/tf457
    /tmp/tf457/bin/pip install torch==2.13.0 "transformers==4.57.*" sentencepiece protobuf
    .venv/bin/python tests/reference/make_qa_reference.py [--python /tmp/tf457/bin/python] [--rebuild]

Step 1 (this venv, transformers 5 + encoderforge): build a tiny random-weight QA checkpoint per family with
`encoderforge.synthetic.build_checkpoint`, and store its tokenizer as tokenizer.json (the one encoderforge's
export would write, repaired template included), with model_max_length = the model's max length so that 4.57's
default max_seq_len equals ours. SentencePiece files are dropped: both sides load tokenizer.json.
Step 2 (the 4.57 venv, `--worker`): run `pipeline("question-answering")` on CASES, record outputs and the
input_ids of every chunk the pipeline fed the model, and write <family>/expected.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "qa_reference"
FAMILIES = ("roberta", "camembert", "convbert", "rembert", "bert")
MIN_GAP = 1e-4
KEEP = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}

LONG = (
    "The river flooded the valley in the spring of 1824, and the mill was rebuilt two years later. "
    "Marie Curie was the first person to win Nobel prizes in two different sciences. "
    "The museum in Lyon holds a collection of silk weaving looms from the nineteenth century. "
    "Please send the quarterly report to the finance team before Friday afternoon. "
    "Our latency budget is twelve milliseconds per request at the ninety-ninth percentile. "
    "She tuned the guitar, counted to four, and the band started playing. "
    "Herman Melville wrote Moby-Dick in 1851, a novel about the white whale. "
    "The satellite sends measurements of sea temperature back to the ground station every hour. "
    "In the beginning the server answered slowly, but caching fixed most of the delay."
)
UNICODE = (
    "Émile Zola est né à Paris 🎉 en 1840 ; il a écrit « Germinal ». 東京は日本の首都です。 "
    "Ça coûte 12,50 € — naïve café façade, Œuvre complète… 🚀 résumé: 北京 和 上海."
)
FRENCH = "Emmanuel Macron vit à Paris et travaille au palais de l'Élysée. Le café est très chaud, fais attention."

# Each case: the pipeline call's keyword arguments (inputs and options), JSON-serialisable.
CASES: list[dict[str, Any]] = [
    {"name": "short", "call": {"question": "Who wrote Moby-Dick?",
                               "context": "Herman Melville wrote Moby-Dick in 1851, a novel about the white whale."}},
    {"name": "long-default-stride", "call": {"question": "When was the mill rebuilt?", "context": LONG}},
    {"name": "long-stride-top3", "call": {"question": "What does the satellite send?", "context": LONG,
                                          "doc_stride": 12, "max_seq_len": 40, "top_k": 3}},
    {"name": "unicode-top3", "call": {"question": "Où est né Émile Zola ? 🎉", "context": UNICODE, "top_k": 3}},
    {"name": "unicode-no-align", "call": {"question": "東京は何ですか？", "context": UNICODE, "top_k": 3,
                                          "align_to_words": False}},
    {"name": "max-answer-len", "call": {"question": "Where does Emmanuel Macron live and work?", "context": FRENCH,
                                        "max_answer_len": 2, "top_k": 4}},
    {"name": "impossible", "call": {"question": "What is the budget?", "context": LONG,
                                    "handle_impossible_answer": True, "top_k": 2, "doc_stride": 20}},
    {"name": "impossible-short", "call": {"question": "Who?", "context": "Marie Curie won two prizes.",
                                          "handle_impossible_answer": True, "top_k": 10}},
    {"name": "question-longer-than-context", "call": {
        "question": "Which city, known for its museum of silk weaving looms from the nineteenth century, is this?",
        "context": "Lyon, France.", "top_k": 2}},
    {"name": "batch-dicts", "call": {"inputs": [
        {"question": "Who won Nobel prizes?", "context": LONG},
        {"question": "Où travaille Macron ?", "context": FRENCH}], "top_k": 2}},
    {"name": "question-list", "call": {"question": ["What boils?", "At what level?"],
                                       "context": "Water boils at one hundred degrees Celsius at sea level."}},
    {"name": "whitespace-context", "call": {"question": "What did she tune?",
                                            "context": "  She  tuned\tthe guitar,\n\ncounted to four.  "}},
]


def build(family: str, directory: Path) -> None:
    """Tiny checkpoint + the tokenizer.json encoderforge's export would write (main venv)."""
    from transformers import AutoConfig

    from encoderforge.exporters.families import FAMILIES as SPECS
    from encoderforge.exporters.tokenizer import load_tokenizer
    from encoderforge.synthetic import build_checkpoint

    shutil.rmtree(directory, ignore_errors=True)
    build_checkpoint(family, "qa", directory, seed=0)
    tokenizer = load_tokenizer(str(directory))
    tokenizer.model_max_length = SPECS.get(family).max_length(AutoConfig.from_pretrained(str(directory)))
    tokenizer.save_pretrained(str(directory))
    config_path = directory / "tokenizer_config.json"
    settings = json.loads(config_path.read_text(encoding="utf-8"))
    if isinstance(settings.get("extra_special_tokens"), list):  # v5 writes a list, 4.57 reads a dict
        del settings["extra_special_tokens"]
        config_path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    for path in directory.iterdir():
        if path.name not in KEEP:
            path.unlink()


def worker(directory: Path) -> None:
    """Run in the transformers 4.57 venv: write expected.json for one checkpoint directory."""
    import tokenizers
    import torch
    import transformers
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    torch.manual_seed(0)
    model, info = AutoModelForQuestionAnswering.from_pretrained(str(directory), output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise SystemExit(f"{directory}: weights do not load cleanly in transformers 4.57: {bad}")
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    assert tokenizer.is_fast, "4.57 must use the fast tokenizer (tokenizer.json)"
    qa = pipeline("question-answering", model=model, tokenizer=tokenizer, device=-1)
    chunks: list[list[int]] = []
    original = qa.preprocess

    def recording(example: Any, **params: Any) -> Any:
        for item in original(example, **params):
            chunks.append(item["input_ids"][0].tolist())
            yield item

    qa.preprocess = recording  # type: ignore[method-assign]
    def run(call: dict[str, Any]) -> Any:
        call = dict(call)
        with torch.no_grad():
            return qa(call.pop("inputs"), **call) if "inputs" in call else qa(**call)

    results = []
    for case in CASES:
        chunks.clear()
        output = run(case["call"])
        results.append({**case, "expected": output, "chunks": list(chunks),
                        "min_relative_gap": _min_relative_gap(case, run)})
    payload = {
        "family": directory.name,
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "tokenizers": tokenizers.__version__},
        "model_max_length": tokenizer.model_max_length,
        "cases": results,
    }
    (directory / "expected.json").write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
    print(f"{directory.name}: {len(results)} cases, transformers {transformers.__version__}")


def _min_relative_gap(case: dict[str, Any], run: Any) -> float:
    """Smallest relative score gap among the top_k + 1 best answers of each question: random weights give
    near-ties, and a gap below MIN_GAP could reorder (or swap in the next answer) under float noise between
    PyTorch and onnxruntime. Cases are chosen so that none is that close; this fails loudly if one is."""
    call = dict(case["call"])
    call["top_k"] = call.get("top_k", 1) + 1
    output = run(call)
    groups = output if "inputs" in call or isinstance(call.get("question"), list) else [output]
    gaps = [1.0]
    for group in groups:
        scores = [a["score"] for a in (group if isinstance(group, list) else [group])]
        gaps += [(a - b) / a for a, b in itertools.pairwise(scores)]
    if min(gaps) < MIN_GAP:
        raise SystemExit(f"case {case['name']!r}: answers {min(gaps):.1e} apart (relative); change its inputs")
    return min(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="/tmp/tf457/bin/python", help="python of the transformers 4.57 venv")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the checkpoints too")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    for family in args.families:
        directory = DATA / family
        if args.rebuild or not (directory / "model.safetensors").is_file():
            build(family, directory)
        subprocess.run([args.python, __file__, "--worker", str(directory)], check=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
