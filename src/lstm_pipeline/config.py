"""Structured-config schemas (registered in Hydra's ConfigStore) and up-front validation.

Job-level keys are dataclass fields, so a misspelled override is rejected by Hydra naming the key.
Component nodes (data, tokenizer, model, model.cell, trainer, decoding) are checked against the
signature of what they feed (the registered component, ``RecurrentLM``, ``lightning.Trainer``)
before any data is loaded, so a typo there is also an error naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


@dataclass
class BatchingSchema:
    batch_size: int = 32
    bptt: int = 128
    eval_batch_size: int = 16
    mode: str = "stream"            # stream | random_windows | documents
    variable_bptt: bool = False     # AWD-LSTM variable-length windows (stream mode), lr scaled by length
    bptt_p_full: float = 0.95       # variable_bptt: probability of a window around bptt (else bptt / 2)
    bptt_std: float = 5.0           # variable_bptt: standard deviation of the window length
    bptt_min: int = 5               # variable_bptt: shortest window
    seed: int = 0                   # random_windows offsets and the variable_bptt schedule
    num_workers: int = 0            # DataLoader workers
    align_documents: bool = False   # documents mode: start every document at a window (one model call per batch)


@dataclass
class SampleSchema:
    prompt: str = "ROMEO:"
    max_new_tokens: int = 200
    temperature: float = 0.8


@dataclass
class TrainJob:
    seed: int = 1234
    run_dir: str = MISSING
    ckpt_path: Optional[str] = None
    data: Any = MISSING
    tokenizer: Any = MISSING
    model: Any = MISSING
    batching: BatchingSchema = field(default_factory=BatchingSchema)
    optim: Any = MISSING
    scheduler: Any = None
    trainer: Any = MISSING
    logger: Any = None
    callbacks: Any = None
    sample: SampleSchema = field(default_factory=SampleSchema)


@dataclass
class GenerateJob:
    run: str = MISSING
    prompt: str = ""
    max_new_tokens: int = 300
    num_samples: int = 1
    seed: Optional[int] = None
    on_unknown: str = "error"
    device: str = "cpu"
    stream: bool = True
    prompts_file: Optional[str] = None
    output_file: Optional[str] = None
    interactive: bool = False
    batch_size: int = 32
    eos_token: Optional[str] = None
    stop_strings: list = field(default_factory=list)
    max_time: Optional[float] = None
    decoding: Any = MISSING


@dataclass
class DynamicEvalSchema:
    enabled: bool = False
    lr: float = 2e-5
    decay: float = 0.02
    epsilon: float = 1e-3
    bptt: int = 32


@dataclass
class CacheSchema:
    enabled: bool = False
    size: int = 500
    theta: float = 0.3
    lam: float = 0.1


@dataclass
class GenerationEvalSchema:
    enabled: bool = False
    num_samples: int = 8
    max_new_tokens: int = 200
    prompt: str = ""
    seed: int = 0
    max_n: int = 4
    decoding: Any = field(default_factory=lambda: {"name": "sample", "temperature": 1.0})


@dataclass
class EvaluateJob:
    run: str = MISSING
    splits: list = field(default_factory=lambda: ["validation", "test"])
    batch_size: int = 16
    bptt: int = 256
    device: str = "cpu"
    data: Any = None
    dump_logprobs: bool = False
    dynamic_eval: DynamicEvalSchema = field(default_factory=DynamicEvalSchema)
    cache: CacheSchema = field(default_factory=CacheSchema)
    generation: GenerationEvalSchema = field(default_factory=GenerationEvalSchema)
    report: Optional[str] = None


@dataclass
class ExportJob:
    run: str = MISSING
    format: str = "onnx"
    quantize: bool = False
    out: Optional[str] = None


@dataclass
class PlotJob:
    run: Any = MISSING
    out: Optional[str] = None
    metrics: list = field(default_factory=lambda: ["loss", "bpc", "lr", "tokens_per_sec"])
    labels: Optional[list] = None


@dataclass
class PushJob:
    run: str = MISSING
    repo_id: str = MISSING
    revision: Optional[str] = None
    private: Optional[bool] = None
    commit_message: Optional[str] = None
    create_pr: bool = False
    dry_run: bool = False


@dataclass
class ServeJob:
    run: str = MISSING
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: Optional[str] = None
    model_name: Optional[str] = None
    device: str = "cpu"
    max_batch: int = 64
    max_streams: int = 256
    max_prompt_tokens: int = 4096
    max_tokens: int = 2048
    default_max_tokens: int = 16
    max_n: int = 16
    eos_token: Optional[str] = None
    on_unknown: str = "error"
    log_level: str = "info"
    engine_process: bool = True
    decoding: Any = MISSING


def register_schemas() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainJob)
    cs.store(name="generate_schema", node=GenerateJob)
    cs.store(name="evaluate_schema", node=EvaluateJob)
    cs.store(name="export_schema", node=ExportJob)
    cs.store(name="plot_schema", node=PlotJob)
    cs.store(name="push_schema", node=PushJob)
    cs.store(name="serve_schema", node=ServeJob)


def to_dict(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _missing_keys(node: DictConfig, prefix: str = "") -> list[str]:
    """Keys whose value is '???', found without resolving interpolations (``hydra`` is skipped)."""
    out = []
    for key in node.keys():
        path = f"{prefix}{key}"
        if path == "hydra" or OmegaConf.is_interpolation(node, key):
            continue
        if OmegaConf.is_missing(node, key):
            out.append(path)
        elif isinstance(node[key], DictConfig):
            out += _missing_keys(node[key], path + ".")
    return out


def validate_train_config(cfg: DictConfig) -> None:
    """Check every component node against the signature it feeds; raise naming the bad key."""
    import lightning as L

    from .models.lm import RecurrentLM
    from .registry import CALLBACKS, CELLS, DATA_SOURCES, TOKENIZERS, validate_kwargs

    missing = _missing_keys(cfg)
    if missing:  # a preset's '???': say which key, not a path with '???' in it later on
        raise ValueError(f"{', '.join(missing)} must be set: add {missing[0]}=<value> to the command line "
                         f"(the chosen config leaves {'it' if len(missing) == 1 else 'them'} as '???').")

    def check(registry, node, what, **runtime):
        node = dict(to_dict(node))
        name = node.pop("name", None)
        if name is None:
            raise ValueError(f"The {what} config needs a 'name' (one of: {', '.join(registry.names())}).")
        validate_kwargs(registry.get(name), {**node, **runtime}, f"{registry.kind} '{name}' ({what})")

    check(DATA_SOURCES, cfg.data, "data")
    check(TOKENIZERS, cfg.tokenizer, "tokenizer")
    model = dict(to_dict(cfg.model))
    cell = model.get("cell")
    validate_kwargs(RecurrentLM, {"vocab_size": 1, **model}, "model")
    check(CELLS, cell, "model.cell", input_size=1, hidden_size=1, num_layers=1, dropout=0.0)
    trainer = dict(to_dict(cfg.trainer))
    validate_kwargs(L.Trainer, trainer, "trainer (lightning.Trainer)")
    for key, node in (to_dict(cfg.callbacks) or {}).items():
        if node is not None and "_target_" not in node:
            check(CALLBACKS, node, f"callbacks.{key}")
