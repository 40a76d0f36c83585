"""The functions and result types of the finepurify package (the C++ library through _core).

Each function takes the run's paths as arguments and every other option as a keyword whose name is
the option's key (the CLI flag without `--`, dashes as underscores); the library's option table
checks names, types, ranges and choices, so a typo is a FinepurifyError listing the known keys.
A model argument is a folder, a registered model name, or a loaded `transformers` model (written
to a temporary folder for the run, with `tokenizer`, and removed after it).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch  # loads libtorch before the extension that links it

from . import _core

Progress = Optional[Callable[[str], None]]


class FinepurifyError(RuntimeError):
    """A library error. `kind` is the rule that failed (as the CLI prints it, e.g.
    "safetensors.invalid_offsets"), `exit_code` the CLI's exit code for it; the message names the
    file, tensor, field or line."""

    def __init__(self, message: str, kind: str, exit_code: int):
        super().__init__(message)
        self.kind = kind
        self.exit_code = exit_code


@contextlib.contextmanager
def _library_errors():
    try:
        yield
    except _core.Error as e:
        raise FinepurifyError(str(e), getattr(e, "kind", "internal"), getattr(e, "exit_code", 70)) from None


def option_names(command: str) -> List[str]:
    """The keyword options `command` ("purify", "defend", "scan", "attack", "finetune") accepts."""
    with _library_errors():
        return list(_core.option_keys(command))


# --- results -------------------------------------------------------------------------------------

class _Result:
    def to_dict(self) -> Dict[str, Any]:
        """Plain data (JSON-serialisable): the typed fields and the library's full report."""
        d = {}
        for k, v in self.__dict__.items():
            if k in ("state_dict", "model", "logits"):
                continue
            d[k] = asdict(v) if hasattr(v, "__dataclass_fields__") else v
            if isinstance(v, list):
                d[k] = [asdict(x) if hasattr(x, "__dataclass_fields__") else x for x in v]
        return d


@dataclass(frozen=True)
class Scores:
    """A model's measures (fractions in [0, 1]; None where the run had no such data)."""
    clean_dev_accuracy: Optional[float] = None
    test_accuracy: Optional[float] = None
    asr: Optional[float] = None
    flip_rate: Optional[float] = None

    @staticmethod
    def of(d: Optional[dict]) -> "Scores":
        d = d or {}
        return Scores(d.get("clean_dev_accuracy"), d.get("test_accuracy"), d.get("asr"), d.get("flip_rate"))


@dataclass(frozen=True)
class Point:
    """One evaluated knob value of the accuracy-budget search."""
    rho: float
    reset_dimensions: int
    clean_dev_accuracy: float
    within_budget: bool
    test_accuracy: Optional[float] = None
    asr: Optional[float] = None
    flip_rate: Optional[float] = None
    seconds: Optional[float] = None


@dataclass(frozen=True)
class ProbeToken:
    """A candidate trigger token and how often inserting it flips the suspect's clean predictions."""
    token: str
    flip_rate: float
    flip_to: int
    flagged: bool


def _probe(diagnosis: dict) -> List[ProbeToken]:
    p = diagnosis.get("token_probe") or {}
    min_flip = p.get("min_flip", 1.0)
    return [ProbeToken(t["token"], t["flip_rate"], t.get("flip_to", -1), t["flip_rate"] >= min_flip)
            for t in p.get("tokens", [])]


@dataclass(repr=False)
class ScanResult(_Result):
    """A scan: the tokens ranked by their share of the indicator, the probe, the full diagnosis."""
    top_tokens: List[str]
    probe: List[ProbeToken]
    report: dict
    report_path: Optional[str] = None

    @property
    def flagged(self) -> List[str]:
        """The probed tokens whose insertion flips at least the probe's threshold of predictions."""
        return [t.token for t in self.probe if t.flagged]

    def __repr__(self) -> str:
        return f"ScanResult(top_tokens={self.top_tokens[:5]}, flagged={self.flagged})"


@dataclass(repr=False)
class PurifyResult(_Result):
    """A defense run: the chosen knob, the suspect's and the purified model's scores, every point.
    `state_dict` holds the purified weights (Hugging Face names; tensors share the library's
    storage); `model` is the caller's transformers model, updated in place, when one was given."""
    method: str
    chosen_rho: float
    suspect: Scores
    purified: Scores
    points: List[Point]
    report: dict
    out: Optional[str] = None
    state_dict: Dict[str, torch.Tensor] = field(default_factory=dict)
    model: Any = None

    def __repr__(self) -> str:
        return (f"PurifyResult(method={self.method!r}, chosen_rho={self.chosen_rho}, suspect={self.suspect}, "
                f"purified={self.purified}, out={self.out!r})")


@dataclass(repr=False)
class AttackResult(_Result):
    """A poisoned model built for evaluation: its clean test accuracy and ASR, where it was saved."""
    clean_test_accuracy: float
    asr: float
    out: str
    report: dict
    state_dict: Dict[str, torch.Tensor] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"AttackResult(clean_test_accuracy={self.clean_test_accuracy}, asr={self.asr}, out={self.out!r})"


@dataclass(repr=False)
class FinetuneResult(_Result):
    out: str
    dev_accuracy: Optional[float]
    report: dict

    def __repr__(self) -> str:
        return f"FinetuneResult(out={self.out!r}, dev_accuracy={self.dev_accuracy})"


@dataclass(repr=False)
class EvalResult(_Result):
    """Accuracy, macro F1 (and ASR with an attack test set); `logits` is (N, C), in data order."""
    accuracy: float
    macro_f1: float
    asr: Optional[float]
    n: int
    report: dict
    logits: Optional[torch.Tensor] = None

    def __repr__(self) -> str:
        return f"EvalResult(accuracy={self.accuracy}, macro_f1={self.macro_f1}, asr={self.asr}, n={self.n})"


# --- inputs --------------------------------------------------------------------------------------

def _is_transformers_model(x: Any) -> bool:
    return hasattr(x, "save_pretrained") and hasattr(x, "state_dict") and hasattr(x, "config")


class _Inputs(contextlib.ExitStack):
    """Turns model arguments into folders; in-memory models go to temporary folders removed on exit."""

    def folder(self, model: Any, tokenizer: Any, what: str) -> str:
        if isinstance(model, (str, os.PathLike)):
            return os.fspath(model)
        if not _is_transformers_model(model):
            raise TypeError(f"{what}: expected a folder, a model name or a transformers model, got {type(model).__name__}")
        d = tempfile.mkdtemp(prefix=f"finepurify-{what}-")
        self.callback(shutil.rmtree, d, ignore_errors=True)
        model.save_pretrained(d, safe_serialization=True)
        tok = tokenizer
        if tok is None:  # the folder the model came from, when it is one
            src = getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "")
            tok = src if src and os.path.isdir(src) else None
        if tok is None:
            raise FinepurifyError(f"{what}: an in-memory transformers model needs its tokenizer (tokenizer=...: a "
                                  "tokenizer object or a folder with its files)", "invalid_argument", 2)
        if isinstance(tok, (str, os.PathLike)):
            for name in os.listdir(tok):
                if name.startswith(("tokenizer", "vocab", "merges", "special_tokens", "added_tokens")):
                    shutil.copy(os.path.join(tok, name), d)
        else:
            tok.save_pretrained(d)
        return d


def _options(options: Dict[str, Any], **paths: Any) -> str:
    o = {k: v for k, v in paths.items() if v is not None}
    o.update(options)
    return json.dumps({k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in o.items()})


def _load_into(model: Any, state: Dict[str, torch.Tensor]) -> None:
    """Copies the purified weights into the caller's transformers model (every parameter must be set)."""
    names = set(state)
    params = {n for n, _ in model.named_parameters()}
    missing = params - names
    if missing:
        raise FinepurifyError(f"the purified weights do not cover the model's parameters: {sorted(missing)[:5]}",
                              "checkpoint.mismatch", 4)
    own = model.state_dict()
    with torch.no_grad():
        for n, t in state.items():
            if n in own:
                own[n].copy_(t)


# --- functions -----------------------------------------------------------------------------------

def scan(pretrained: Any, suspect: Any, clean: Any, *, report: Optional[str] = None, tokenizer: Any = None,
         device: str = "cpu", progress: Progress = None, **options: Any) -> ScanResult:
    """Ranks the suspect's dimensions and tokens (clean Fisher + indicator) and probes the top tokens;
    no fine-tuning. `report`: also write it (.json, .md or .html; an .html page beside the others)."""
    with _Inputs() as inp, _library_errors():
        opts = _options(options, pretrained=inp.folder(pretrained, tokenizer, "pretrained"),
                        suspect=inp.folder(suspect, tokenizer, "suspect"), clean=clean)
        d = json.loads(_core.scan(opts, os.fspath(report) if report else "", device, progress))
    return ScanResult([t["token"] for t in d.get("top_tokens", [])], _probe(d), d,
                      os.fspath(report) if report else None)


def _defend(command: str, pretrained: Any, suspect: Any, clean: Any, out: Optional[str], overwrite: bool,
            tokenizer: Any, device: str, progress: Progress, options: Dict[str, Any]) -> PurifyResult:
    with _Inputs() as inp, _library_errors():
        opts = _options(options, pretrained=inp.folder(pretrained, tokenizer, "pretrained"),
                        suspect=inp.folder(suspect, tokenizer, "suspect"), clean=clean)
        text, state = _core.defend(opts, os.fspath(out) if out else "", overwrite, command, device, progress)
    r = json.loads(text)
    points = [Point(p["rho"], p.get("reset_dimensions", 0), p["clean_dev_accuracy"], p.get("within_budget", True),
                    p.get("test_accuracy"), p.get("asr"), p.get("flip_rate"), p.get("seconds")) for p in r.get("evaluated", [])]
    res = PurifyResult(r.get("method", command), r.get("chosen_rho", 0.0), Scores.of(r.get("suspect")), Scores.of(r.get("purified")),
                       points, r, os.fspath(out) if out else None, state)
    if _is_transformers_model(suspect):
        _load_into(suspect, state)
        res.model = suspect
    return res


def purify(pretrained: Any, suspect: Any, clean: Any, *, out: Optional[str] = None, overwrite: bool = False,
           tokenizer: Any = None, device: str = "cpu", progress: Progress = None, **options: Any) -> PurifyResult:
    """Fine-purifying: reset the poisonous dimensions of `suspect` to `pretrained`'s values and
    fine-tune on `clean`, the knob chosen on clean dev data under the accuracy budget. `out`: save
    the purified model as a Hugging Face folder with its reports. A transformers `suspect` is
    updated in place."""
    return _defend("purify", pretrained, suspect, clean, out, overwrite, tokenizer, device, progress, options)


def defend(method: str, pretrained: Any, suspect: Any, clean: Any, *, out: Optional[str] = None,
           overwrite: bool = False, tokenizer: Any = None, device: str = "cpu", progress: Progress = None,
           **options: Any) -> PurifyResult:
    """One defense (`method`: fine-purifying or a baseline such as magnitude, fine-pruning,
    fine-mixing) under the same clean data, trainer and budget rule as `purify`."""
    return _defend("defend", pretrained, suspect, clean, out, overwrite, tokenizer, device, progress,
                   {"method": method, **options})


def attack(pretrained: Any, train: str, out: str, *, method: str = "badword", overwrite: bool = False,
           device: str = "cpu", progress: Progress = None, **options: Any) -> AttackResult:
    """Builds a backdoored classifier for evaluation (`method`: badword, addsent, ep, lwp, bias,
    import) and its clean / triggered test sets in `out`."""
    with _Inputs() as inp, _library_errors():
        opts = _options({"method": method, **options}, pretrained=inp.folder(pretrained, None, "pretrained"), train=train)
        text, state = _core.attack(opts, os.fspath(out), overwrite, device, progress)
    r = json.loads(text)
    return AttackResult(r["clean_test_accuracy"], r["asr"], os.fspath(out), r, state)


def finetune(model: Any, train: str, out: str, *, overwrite: bool = False, tokenizer: Any = None,
             device: str = "cpu", progress: Progress = None, **options: Any) -> FinetuneResult:
    """Fine-tunes a pre-trained checkpoint (a new head) or a classifier on `train`; saves to `out`."""
    with _Inputs() as inp, _library_errors():
        opts = _options(options, model=inp.folder(model, tokenizer, "model"), train=train)
        r = json.loads(_core.finetune(opts, os.fspath(out), overwrite, device, progress))
    return FinetuneResult(os.fspath(out), (r.get("dev") or {}).get("accuracy"), r)


def evaluate(model: Any, data: str, *, max_length: int = 128, batch_size: int = 128, attack_test: Optional[str] = None,
             target_label: int = -1, tokenizer: Any = None, device: str = "cpu", progress: Progress = None) -> EvalResult:
    """Accuracy, per-class scores and logits of a classifier on a labelled file (and the ASR on
    `attack_test`, the triggered set, with `target_label`)."""
    with _Inputs() as inp, _library_errors():
        text, logits = _core.evaluate(inp.folder(model, tokenizer, "model"), os.fspath(data), max_length, batch_size,
                                      os.fspath(attack_test) if attack_test else "", target_label, device, progress)
    r = json.loads(text)
    return EvalResult(r["accuracy"], r["macro_f1"], r.get("asr"), r["n"], r, logits)
