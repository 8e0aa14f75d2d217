"""Build F5-TTS (a DiT flow-matching model) and the Vocos vocoder, from files or at random.

Only F5's inference modules are imported: `f5_tts.model`'s own `__init__` imports its
trainer (wandb, accelerate, datasets), which the `gpu` extra leaves out, so the package
is entered here with an empty shell for `f5_tts.model` and the inference modules (the
CFM sampler, the DiT backbone, the text utilities) are imported one by one.

Weights come from local files (`HARK_F5_CHECKPOINT`: F5's `.safetensors` or `.pt`;
`HARK_VOCOS_PATH`: a folder with Vocos' `config.yaml` and `pytorch_model.bin`) or, where
a model hub is reachable, from the official names. The architecture comes from an F5
YAML config (`HARK_F5_MODEL_CONFIG`, default the packaged `F5TTS_v1_Base.yaml`), so the
tests and benchmarks build random-init models of any size through the same code.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
import yaml

from server.engines.base import EngineUnavailable

PACKAGES = "pip install 'hark[gpu]' (scripts/install.sh gpu)"
OFFICIAL_CHECKPOINT = ("SWivid/F5-TTS", "F5TTS_v1_Base/model_1250000.safetensors")
OFFICIAL_VOCOS = "charactr/vocos-mel-24khz"
# charactr/vocos-mel-24khz's config.yaml: the vocoder F5-TTS v1 was trained with.
VOCOS_MEL_24KHZ: dict[str, Any] = {
    "feature_extractor": {
        "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
        "init_args": {
            "sample_rate": 24000,
            "n_fft": 1024,
            "hop_length": 256,
            "n_mels": 100,
            "padding": "center",
        },
    },
    "backbone": {
        "class_path": "vocos.models.VocosBackbone",
        "init_args": {"input_channels": 100, "dim": 512, "intermediate_dim": 1536, "num_layers": 8},
    },
    "head": {
        "class_path": "vocos.heads.ISTFTHead",
        "init_args": {"dim": 512, "n_fft": 1024, "hop_length": 256, "padding": "center"},
    },
}


@dataclass(frozen=True)
class MelSettings:
    sample_rate: int = 24000
    n_mels: int = 100
    hop_length: int = 256
    win_length: int = 1024
    n_fft: int = 1024


@dataclass(frozen=True)
class F5Architecture:
    """The `model:` section of an F5 YAML config: the DiT's shape and the mel settings."""

    name: str
    arch: dict[str, Any]
    mel: MelSettings

    @classmethod
    def from_yaml(cls, path: Path) -> F5Architecture:
        try:
            model = yaml.safe_load(Path(path).read_text())["model"]
            mel = model["mel_spec"]
            if model.get("backbone", "DiT") != "DiT":
                raise EngineUnavailable(f"{path}: only the DiT backbone (F5-TTS) is supported")
            if mel.get("mel_spec_type", "vocos") != "vocos":
                raise EngineUnavailable(f"{path}: only the Vocos mel spectrogram is supported")
            return cls(
                name=str(model.get("name", Path(path).stem)),
                arch=dict(model["arch"]),
                mel=MelSettings(
                    sample_rate=int(mel["target_sample_rate"]),
                    n_mels=int(mel["n_mel_channels"]),
                    hop_length=int(mel["hop_length"]),
                    win_length=int(mel["win_length"]),
                    n_fft=int(mel["n_fft"]),
                ),
            )
        except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
            raise EngineUnavailable(f"cannot read the F5 model config {path}: {exc!r}") from exc


def f5_modules() -> types.SimpleNamespace:
    """F5's CFM, DiT and text helpers, imported without its training stack."""
    spec = importlib.util.find_spec("f5_tts")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable(f"f5-tts is not installed: {PACKAGES}")
    if "f5_tts.model" not in sys.modules:
        shell = types.ModuleType("f5_tts.model")
        shell.__path__ = [str(Path(next(iter(spec.submodule_search_locations))) / "model")]
        shell.__package__ = "f5_tts.model"
        sys.modules["f5_tts.model"] = shell
    try:
        cfm = importlib.import_module("f5_tts.model.cfm")
        dit = importlib.import_module("f5_tts.model.backbones.dit")
        utils = importlib.import_module("f5_tts.model.utils")
    except ImportError as exc:
        raise EngineUnavailable(f"F5-TTS cannot be imported ({exc}): {PACKAGES}") from exc
    return types.SimpleNamespace(
        CFM=cfm.CFM,
        DiT=dit.DiT,
        get_tokenizer=utils.get_tokenizer,
        convert_char_to_pinyin=utils.convert_char_to_pinyin,
    )


def packaged_file(relative: str) -> Path:
    """A file shipped inside the f5-tts wheel (its vocab, its model configs)."""
    try:
        return Path(str(files("f5_tts").joinpath(relative)))
    except ModuleNotFoundError as exc:
        raise EngineUnavailable(f"f5-tts is not installed: {PACKAGES}") from exc


def default_model_config() -> Path:
    return packaged_file("configs/F5TTS_v1_Base.yaml")


def default_vocab() -> Path:
    return packaged_file("infer/examples/vocab.txt")


def build_f5(
    architecture: F5Architecture, vocab: Path, *, attn_mask: bool = False
) -> torch.nn.Module:
    """An F5 model (CFM around a DiT) with random weights, on the CPU, in eval mode.

    `attn_mask`: mask padded frames in attention, needed when items of different lengths
    share a batch (an inference-time switch; the weights do not depend on it).
    """
    f5 = f5_modules()
    try:
        vocab_map, vocab_size = f5.get_tokenizer(str(vocab), "custom")
    except OSError as exc:
        raise EngineUnavailable(f"cannot read the F5 vocab {vocab}: {exc}") from exc
    arch = {**architecture.arch, "attn_mask_enabled": attn_mask}
    mel = architecture.mel
    import warnings

    with warnings.catch_warnings():
        # F5 warns that a torch attention mask costs memory; Hark batches short clauses.
        warnings.simplefilter("ignore", UserWarning)
        transformer = f5.DiT(**arch, text_num_embeds=vocab_size, mel_dim=mel.n_mels)
    model = f5.CFM(
        transformer=transformer,
        mel_spec_kwargs={
            "n_fft": mel.n_fft,
            "hop_length": mel.hop_length,
            "win_length": mel.win_length,
            "n_mel_channels": mel.n_mels,
            "target_sample_rate": mel.sample_rate,
            "mel_spec_type": "vocos",
        },
        odeint_kwargs={"method": "euler"},
        vocab_char_map=vocab_map,
    )
    return model.eval()


def load_f5_weights(model: torch.nn.Module, checkpoint: Path) -> None:
    """F5's checkpoint into `model`: the EMA weights of a `.pt`, or a `.safetensors`."""
    if not checkpoint.is_file():
        raise EngineUnavailable(f"HARK_F5_CHECKPOINT {checkpoint} is not a file")
    try:
        if checkpoint.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(checkpoint), device="cpu")
        else:
            loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
            state = loaded.get("ema_model_state_dict") or loaded.get("model_state_dict") or loaded
    except (OSError, RuntimeError, ValueError) as exc:
        raise EngineUnavailable(f"cannot read the F5 checkpoint {checkpoint}: {exc}") from exc
    state = {
        key.removeprefix("ema_model."): value
        for key, value in state.items()
        if key not in ("initted", "step") and not key.startswith("mel_spec.")
    }
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if not key.startswith("mel_spec.")]
    if missing or unexpected:
        raise EngineUnavailable(
            f"{checkpoint} does not fit the model config (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}): check HARK_F5_MODEL_CONFIG"
        )


def build_vocos(config: dict[str, Any] | Path) -> torch.nn.Module:
    """A Vocos vocoder with random weights, from a config dict or `config.yaml`."""
    try:
        from vocos import Vocos
    except ImportError as exc:
        raise EngineUnavailable(f"vocos is not installed ({exc}): {PACKAGES}") from exc
    if isinstance(config, Path):
        return Vocos.from_hparams(str(config)).eval()
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        yaml.safe_dump(config, handle)
        handle.flush()
        return Vocos.from_hparams(handle.name).eval()


def load_vocos(path: Path | None) -> torch.nn.Module:
    """Vocos from a local folder (config.yaml + pytorch_model.bin), else the hub."""
    if path is None:
        try:
            from huggingface_hub import hf_hub_download

            config = Path(hf_hub_download(OFFICIAL_VOCOS, "config.yaml"))
            weights = Path(hf_hub_download(OFFICIAL_VOCOS, "pytorch_model.bin"))
        except Exception as exc:  # offline, no such repo, no network: all say the same
            raise EngineUnavailable(
                f"no HARK_VOCOS_PATH and the hub has no {OFFICIAL_VOCOS} here ({exc}); "
                "set HARK_VOCOS_PATH to a folder with config.yaml and pytorch_model.bin"
            ) from exc
    else:
        config, weights = path / "config.yaml", path / "pytorch_model.bin"
        if not config.is_file() or not weights.is_file():
            raise EngineUnavailable(
                f"HARK_VOCOS_PATH {path} needs config.yaml and pytorch_model.bin"
            )
    vocoder = build_vocos(config)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        vocoder.load_state_dict(state)
    except (OSError, RuntimeError, ValueError) as exc:
        raise EngineUnavailable(f"cannot load the Vocos weights {weights}: {exc}") from exc
    return vocoder


def official_checkpoint() -> Path:
    """F5-TTS v1 Base from the hub, where one is reachable."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(*OFFICIAL_CHECKPOINT))
    except Exception as exc:  # offline, no such repo, no network: all say the same
        raise EngineUnavailable(
            f"no HARK_F5_CHECKPOINT and the hub has no {'/'.join(OFFICIAL_CHECKPOINT)} here "
            f"({exc}); set HARK_F5_CHECKPOINT to F5's model_*.safetensors"
        ) from exc


def resolve_device(requested: str) -> torch.device:
    """`auto`: the first CUDA device if torch sees one, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EngineUnavailable(f"device {requested!r} asked for, but torch sees no CUDA GPU")
    return device
