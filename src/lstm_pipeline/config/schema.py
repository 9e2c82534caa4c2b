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

#: field metadata of the settings that hold text a user types (prompts, stop strings, special tokens):
#: kept literal by :mod:`lstm_pipeline.config.overrides`, never interpolated (``${...}`` stays as typed)
TEXT = {"text": True}
#: settings of components (data, tokenizer, decoding nodes) that hold such text, whichever component it is
TEXT_SETTINGS = ("eos_token", "document_separator", "special_tokens", "unk_token", "filename")


# The job settings of every command, with their defaults: the one place they are written. The
# command's YAML file (conf/<command>.yaml) extends its schema and adds only interpolations and
# Hydra's own settings; ``lstm-pipeline <command> --cfg job`` prints the composed config.


@dataclass
class BatchingSchema:
    batch_size: int = 32            # contiguous streams per process (B)
    bptt: int = 128                 # truncated-BPTT window (T)
    eval_batch_size: int = 16       # streams for validation/test
    mode: str = "stream"            # stream (state carried) | random_windows (nanoGPT) | documents (state reset per document)
    variable_bptt: bool = False     # AWD-LSTM variable-length windows (stream mode), lr scaled by length
    bptt_p_full: float = 0.95       # variable_bptt: probability of a window around bptt (else bptt / 2)
    bptt_std: float = 5.0           # variable_bptt: standard deviation of the window length
    bptt_min: int = 5               # variable_bptt: shortest window
    seed: int = "${seed}"           # random_windows offsets and the variable_bptt schedule  # type: ignore[assignment]
    num_workers: int = 0            # DataLoader workers
    align_documents: bool = False   # documents mode: start every document at a window (one model call per batch)


@dataclass
class SampleSchema:                 # the sample printed when training ends (and the model's default decoding)
    prompt: str = field(default="ROMEO:", metadata=TEXT)
    max_new_tokens: int = 200
    temperature: float = 0.8


@dataclass
class TrainJob:
    seed: int = 1234                # seeds torch, numpy, python (and dataloader workers)
    run_dir: str = MISSING          # conf/train.yaml: Hydra's output directory
    ckpt_path: Optional[str] = None  # resume: a run directory or a .ckpt file
    budget: Optional[str] = None    # train for this long: 120s, 2m, 1h30m (sets trainer.max_time; docs/training.md)
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
    # the run's lightning ModelCheckpoint in <run dir>/checkpoints (none: trainer.enable_checkpointing=false);
    # checked by validation.check_checkpoint; other ModelCheckpoint arguments with +checkpoint.<arg>=...
    checkpoint: Any = field(default_factory=lambda: {
        "save_top_k": 1,                # best checkpoints kept, ranked by `monitor` (0: none, -1: every one saved)
        "save_last": True,              # checkpoints/last.ckpt, which ckpt_path=<run dir> resumes from
        "every_n_train_steps": None,    # also save every N optimizer steps (null: at each validation)
        "monitor": "val_loss",          # null: no ranking (with save_top_k=-1 and every_n_train_steps: snapshots)
        "mode": "min",
        "filename": "best-{step}"})
    optimized_metric: Optional[str] = None  # train returns this metric (e.g. best_val_loss) for Hydra sweepers (Optuna, Ax, ...)
    # the Jinja chat template the model records in tokenizer_config.json (serve's /v1/chat/completions,
    # transformers' apply_chat_template); null: the built-in one (USER: / ASSISTANT: lines; docs/serve.md "Chat")
    chat_template: Optional[str] = field(default=None, metadata=TEXT)


@dataclass
class GenerateJob:
    run: str = MISSING              # a run directory (or its model/ directory), or a Hub repo id
    prompt: str = field(default="", metadata=TEXT)  # empty: start from the start-of-text state (bos_token_id)
    max_new_tokens: int = 300
    num_samples: int = 1            # rows generated from the same prompt
    seed: Optional[int] = None      # an int gives identical output across runs
    on_unknown: str = "error"       # prompt characters the tokenizer never saw: error | replace | skip
    device: str = "cpu"
    stream: bool = True             # print text as it is produced (not with beam strategies)
    prompts_file: Optional[str] = None  # a text file, one prompt a line: generates for all of them in batches
    output_file: Optional[str] = None   # with prompts_file: write JSON lines here (default: stdout)
    interactive: bool = False       # a prompt loop reading lines from stdin until end of input
    batch_size: int = 32            # prompts generated together with prompts_file
    eos_token: Optional[str] = field(default=None, metadata=TEXT)  # null: the model's own end-of-text token (if any); none: never stop at a token
    stop_strings: list = field(default_factory=list, metadata=TEXT)  # stop a row once its text contains one ("\\n" is a newline)
    max_time: Optional[float] = None  # seconds: stop every row after this long
    decoding: Any = None            # null: the model's generation_config.json; decoding=<strategy> to choose
    quantize: Optional[str] = None  # int8: dynamic int8 steps on the CPU (faster at small batches; docs/generation.md)


@dataclass
class DynamicEvalSchema:            # Krause et al. 2018: adapt the weights on the text as it is scored
    enabled: bool = False
    lr: float = 2e-5                # step size of the RMS-normalised update
    decay: float = 0.02             # pull back towards the trained weights each step
    epsilon: float = 1e-3
    bptt: int = 32                  # tokens scored per update


@dataclass
class CacheSchema:                  # Grave et al. 2017 neural cache pointer (as AWD-LSTM applies it)
    enabled: bool = False
    size: int = 500                 # hidden states remembered per stream
    theta: float = 0.3              # flatness of the pointer distribution
    lam: float = 0.1                # weight of the pointer in the mixture


@dataclass
class GenerationEvalSchema:         # quality of sampled continuations
    enabled: bool = False
    num_samples: int = 8
    max_new_tokens: int = 200
    prompt: str = field(default="", metadata=TEXT)  # empty: from the start-of-text state
    seed: int = 0
    max_n: int = 4                  # distinct-1..n, repetition rate and self-BLEU use n-grams up to this
    decoding: Any = field(default_factory=lambda: {"name": "sample"})


@dataclass
class EvaluateJob:
    run: str = MISSING              # a run directory written by 'lstm-pipeline train'
    splits: list = field(default_factory=lambda: ["validation", "test"])
    batch_size: int = 16            # contiguous streams; the state is carried across the whole split
    bptt: int = 256
    device: str = "cpu"
    data: Any = None                # evaluate on other data: data=<preset> data.path=... (default: the run's own)
    dump_logprobs: bool = False     # write <run>/eval/<split>.logprobs.tsv: position, token id, token, log-prob (nats)
    dynamic_eval: DynamicEvalSchema = field(default_factory=DynamicEvalSchema)
    cache: CacheSchema = field(default_factory=CacheSchema)
    generation: GenerationEvalSchema = field(default_factory=GenerationEvalSchema)
    report: Optional[str] = None    # JSON report path (default: <run>/eval.json)


@dataclass
class ExportJob:
    run: str = MISSING              # a run directory (or its model/ directory)
    format: str = "onnx"            # onnx | torchscript
    quantize: bool = False          # dynamic int8 matrix products, for CPU inference
    out: Optional[str] = None       # output file (default: <run>/export/model.step[.int8].onnx|.pt)


@dataclass
class PlotJob:
    run: Any = MISSING              # one run directory or a list of them
    out: Optional[str] = None       # output directory (default: <first run>/plots), or a file (out=curves.png: one figure)
    metrics: list = field(default_factory=lambda: ["loss", "bpc", "lr", "tokens_per_sec"])  # one PNG per metric
    labels: Optional[list] = None   # legend names, one per run (default: the run directories' names)


@dataclass
class PushJob:
    run: str = MISSING              # a run directory (or its model/ directory)
    repo_id: str = MISSING          # the Hub repo, created if missing: <user or org>/<name>
    revision: Optional[str] = None  # branch to commit to (default: main)
    private: Optional[bool] = None  # create the repo private
    commit_message: Optional[str] = None
    create_pr: bool = False         # open a pull request instead of committing to the branch
    dry_run: bool = False           # list the files that would be uploaded; send nothing
    # the uploaded model card's metadata (default: the card's own; no license stated)
    license: Optional[str] = None   # a Hub license id: mit, apache-2.0, cc-by-4.0, other...
    language: Optional[str] = None  # ISO 639-1 code(s), e.g. en (the bundled corpus and wikitext: en already)
    datasets: Optional[str] = None  # the Hub dataset id the model was trained on (default: from the run's data)


@dataclass
class ServeJob:
    run: str = MISSING              # a run directory (or its model/ directory) or a Hugging Face Hub id; fixed at start
    host: str = "127.0.0.1"         # loopback only; another address exposes the model (set an api_key then)
    port: int = 8000
    api_key: Optional[str] = None   # requests must send "Authorization: Bearer <key>" when set (conf: $LSTM_PIPELINE_API_KEY)
    model_name: Optional[str] = None  # the id clients pass as "model" (default: the run directory's name or the hub id)
    device: str = "cpu"
    max_batch: int = 64             # rows stepped together; more wait in line
    max_streams: int = 256          # rows running or waiting; beyond that requests get 429
    max_prompt_tokens: int = 4096   # longer prompts get 400
    max_tokens: int = 2048          # the largest max_tokens a request may ask for
    default_max_tokens: int = 16    # max_tokens when a request leaves it out (OpenAI's default)
    max_n: int = 16                 # the largest n
    eos_token: Optional[str] = field(default=None, metadata=TEXT)  # null: the model's own end-of-text token (as generate); none: no token ends a row
    on_unknown: str = "error"       # prompt characters the tokenizer never saw: error | replace | skip
    log_level: str = "info"         # uvicorn's: critical | error | warning | info | debug
    engine_process: bool = True     # the batching loop in its own process (false: a thread here, slower under load)
    stream_interval_ms: float = 0   # a stream gets at most one event per this many ms (tokens chosen meanwhile
                                    # go out together; the first never waits); 0: every token at once
    decoding: Any = None            # the defaults for requests that do not set a field: null, the model's own
                                    # (generation_config.json, as generate); decoding=<strategy> to choose
    cors_origins: list = field(default_factory=list)  # origins whose pages may call the API from a browser
                                    # (CORS), e.g. [http://localhost:3000]; none by default ("*": any)


#: command -> the component groups whose settings its config composes (see register_component_schemas)
COMPONENT_GROUPS = {"train": ("model", "model/cell", "tokenizer", "data"), "evaluate": ("data",),
                    "generate": ("decoding",), "serve": ("decoding",)}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def component_defaults(group: str, name: str) -> dict[str, Any]:
    """Every setting of a registered component and its default, read from the component itself
    (its signature; for decoders, the settings the built decoder holds): the one source of defaults.
    ``group`` is a config group (``model/cell``, ``decoding``, ``tokenizer``, ``data``); ``model``
    (name ``lstm_lm``) is RecurrentLM without its cell."""
    import inspect

    if group == "model":
        from ..models.lm import RecurrentLM

        params = inspect.signature(RecurrentLM).parameters
        return {k: _plain(p.default) for k, p in params.items() if k not in ("vocab_size", "cell")}
    from ..registry import DATA_SOURCES, DECODERS, TOKENIZERS

    if group == "decoding":
        return {"name": name, **_plain(DECODERS.build({"name": name}).settings)}
    if group == "model/cell":
        from ..models.lm import complete_cell_config

        return _plain(complete_cell_config({"name": name}))
    reg = {"tokenizer": TOKENIZERS, "data": DATA_SOURCES}[group]
    params = inspect.signature(reg.get(name)).parameters
    return {"name": name, **{k: _plain(p.default) for k, p in params.items()
                             if p.default is not inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD}}


def register_component_schemas(command: str | None = None) -> None:
    """Store ``schema/<group>/<name>`` in Hydra's ConfigStore for each built-in component of the
    groups ``command`` composes (all groups when None): every setting with the component's own
    default. A config file extends it (``defaults: [/schema/decoding/sample@_here_, _self_]``) and
    holds only what differs, so ``decoding.temperature=0.5`` needs no '+', ``--cfg job`` shows every
    default, and the values come from one place. Plugin components list their settings in their own
    config files."""
    from importlib.metadata import distribution

    from ..registry import CELLS, DATA_SOURCES, DECODERS, TOKENIZERS

    cs = ConfigStore.instance()
    groups = COMPONENT_GROUPS.get(command, ()) if command else {g for gs in COMPONENT_GROUPS.values() for g in gs}
    regs = {"model/cell": CELLS, "decoding": DECODERS, "tokenizer": TOKENIZERS, "data": DATA_SOURCES}
    own = distribution("lstm-pipeline").entry_points  # our built-ins: cheap to import, never a plugin's fault
    for group in groups:
        if group == "model":
            cs.store(group="schema/model", name="lstm_lm", node=component_defaults("model", "lstm_lm"))
            continue
        for ep in own.select(group=regs[group].group):
            cs.store(group=f"schema/{group}", name=ep.name, node=component_defaults(group, ep.name))


def register_schemas(command: str | None = None) -> None:
    register_component_schemas(command)
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
