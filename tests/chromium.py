"""Debian's headless Chromium with a WAV file as its microphone, for the page tests and the
browser benchmarks (driven by Python playwright)."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
RATE = 48000  # the fake-capture device is happiest with 48 kHz mono 16-bit
# Headless on this machine: no sandbox, GPU, QUIC or background traffic; audio may play.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def launch(playwright, profile: Path, wav: Path):
    return playwright.chromium.launch_persistent_context(
        user_data_dir=str(profile),
        executable_path=str(CHROMIUM),
        headless=True,
        viewport={"width": 412, "height": 860},  # a phone-sized window
        permissions=["microphone"],
        args=[
            *FLAGS,
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}%noloop",
        ],
    )
