"""Random-init F5-TTS (DiT) and Vocos models, written as the files Hark loads.

No package ships F5 or Vocos weights, so tests build them: random weights in F5's own
checkpoint format (`.safetensors`), a Vocos folder (`config.yaml` + `pytorch_model.bin`)
and an F5 YAML model config, then point the engine at them exactly as an operator
points it at the real ones. `tiny` is for tests (milliseconds a chunk on a CPU);
`base` is F5TTS_v1_Base's shape and Vocos mel-24kHz's, for benchmarks: compute does
not depend on the weights.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import yaml

from server.engines.f5 import loading
from server.engines.f5_tts import F5Files
from server.engines.voices import VoiceReference

MEL = {
    "target_sample_rate": 24000,
    "n_mel_channels": 100,
    "hop_length": 256,
    "win_length": 1024,
    "n_fft": 1024,
    "mel_spec_type": "vocos",
}
TINY_ARCH = {
    "dim": 64,
    "depth": 2,
    "heads": 2,
    "dim_head": 32,
    "ff_mult": 2,
    "text_dim": 32,
    "conv_layers": 1,
}


def write_model_config(folder: Path, name: str, arch: dict[str, object]) -> Path:
    path = folder / f"{name}.yaml"
    config = {"model": {"name": name, "backbone": "DiT", "arch": arch, "mel_spec": MEL}}
    path.write_text(yaml.safe_dump(config))
    return path


def write_random_f5(folder: Path, *, seed: int = 0) -> F5Files:
    """A tiny random-init F5 + Vocos on disk, and the `F5Files` naming them."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = write_model_config(folder, "f5-tiny", TINY_ARCH)
    torch.manual_seed(seed)
    model = loading.build_f5(loading.F5Architecture.from_yaml(config), loading.default_vocab())
    checkpoint = folder / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    vocos_dir = folder / "vocos"
    vocos_dir.mkdir(exist_ok=True)
    vocos_config = copy.deepcopy(loading.VOCOS_MEL_24KHZ)
    vocos_config["backbone"]["init_args"].update(dim=32, intermediate_dim=64, num_layers=1)
    vocos_config["head"]["init_args"]["dim"] = 32
    (vocos_dir / "config.yaml").write_text(yaml.safe_dump(vocos_config))
    vocoder = loading.build_vocos(vocos_dir / "config.yaml")
    torch.save(vocoder.state_dict(), vocos_dir / "pytorch_model.bin")
    return F5Files(checkpoint=checkpoint, vocos=vocos_dir, model_config=config)


def base_size_modules(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """F5TTS_v1_Base (336 M parameters) and Vocos mel-24kHz, random weights."""
    torch.manual_seed(seed)
    architecture = loading.F5Architecture.from_yaml(loading.default_model_config())
    model = loading.build_f5(architecture, loading.default_vocab(), attn_mask=True)
    return model, loading.build_vocos(loading.VOCOS_MEL_24KHZ)


def voiced_reference(
    seconds: float = 3.0, rate: int = 16000, pitch_hz: float = 140.0, text: str = ""
) -> VoiceReference:
    """A voice-like clip built here (a harmonic buzz with a syllable rhythm) and words
    for it: a stand-in reference with a voice's level and spectrum, not a voice."""
    t = np.arange(int(seconds * rate)) / rate
    harmonics = sum(np.sin(2 * np.pi * pitch_hz * k * t) / k for k in range(1, 8))
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t)
    pcm = (0.25 * harmonics * syllables / 2.6 * 32767).astype(np.int16)
    words = text or "This is my voice, and these are the words I said in the clip."
    return VoiceReference(pcm, rate, words, name=f"buzz-{pitch_hz:g}")
