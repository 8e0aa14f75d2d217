"""`python -m server serve` starts Hark; `call` talks to a running one; `token` mints a token.

`python -m server token --scope operator --ttl 3600` prints an operator token signed with
the server's active key (the same `HARK_JWT_*` variables as the server; it needs no
running server and no network).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from server.config import Config, ConfigError


def _setup_logging(verbose: bool, log_format: str = "text") -> None:
    from server.ops.log_format import setup_logging

    setup_logging(log_format, verbose)


def _page_url(config: Config) -> str:
    host = "127.0.0.1" if config.host in ("0.0.0.0", "", "::") else config.host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.port}/"


def serve(args: argparse.Namespace) -> int:
    from signaling.signing_keys import KeyRingError, key_ring_for

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        config = Config.from_env()
        config.validate()
        try:
            key_ring_for(config)
        except KeyRingError as exc:
            raise ConfigError(f"signing keys: {exc}") from exc
    except ConfigError as exc:
        print(f"hark: configuration error: {exc}", file=sys.stderr)
        return 2
    _setup_logging(args.verbose, config.log_format)
    if config.api_key_generated:
        print(
            "hark: no HARK_API_KEYS set; generated an API key for this run (shown once):\n"
            f"      {config.api_keys[0]}",
            file=sys.stderr,
        )
    if config.admin_key_generated:
        print(
            "hark: no HARK_ADMIN_KEYS set; generated an admin key for this run (shown once):\n"
            f"      {config.admin_keys[0]}",
            file=sys.stderr,
        )
    from server.persona.library import PersonaError, PersonaLibrary

    try:
        personas = PersonaLibrary.load(config.personas_dir)
        if config.persona and config.persona not in personas:
            raise PersonaError(
                f"HARK_PERSONA={config.persona!r}: no such persona in {config.personas_dir}"
            )
    except PersonaError as exc:
        print(f"hark: persona error: {exc}", file=sys.stderr)
        return 2

    def announce() -> None:
        if os.environ.get("HARK_WORKER_INDEX"):  # a worker's private port: the front announces
            return
        lines = [f"Hark is ready on {config.host}:{config.port}"]
        if config.demo_page:
            lines.append(f"Open {_page_url(config)} in a browser and talk.")
        else:
            lines.append("Demo page is off (not on loopback); mint client secrets with an API key.")
        lines.append(
            f"Operators: http://{config.host}:{config.port}/operator "
            "(with the admin key or an operator token)."
        )
        if config.workers > 1:
            lines.append(f"{config.workers} worker processes (HARK_WORKERS).")
        print("\n".join(f"hark: {line}" for line in lines), file=sys.stderr, flush=True)

    if config.workers > 1:  # the front: workers on private ports (server/workers)
        from server.workers.front import serve_front

        return serve_front(config, announce)
    from aiohttp import web

    # The engines: not in a front's process.
    from server.app import NODE_KEY, create_app, drain_on_sigterm
    from server.engines.core_share import CoreShare
    from server.engines.factory import build_engines

    app = create_app(config, build_engines(config, CoreShare.from_env()), personas)
    app[NODE_KEY].on_ready.append(announce)
    app.on_startup.append(drain_on_sigterm)  # SIGTERM: stop admitting, let calls end, exit
    worker = os.environ.get("HARK_WORKER_INDEX")
    where = f"worker {worker} (private)" if worker else "listening"
    print(
        f"hark: {where} on http://{config.host}:{config.port} (loading models…)",
        file=sys.stderr,
        flush=True,
    )
    web.run_app(app, host=config.host, port=config.port, print=None, access_log=None)
    return 0


def call(args: argparse.Namespace) -> int:
    from server.tools.call_client import run_call_cli

    _setup_logging(args.verbose)
    return asyncio.run(run_call_cli(args))


def token(args: argparse.Namespace) -> int:
    from signaling.client_secrets import ClientSecrets
    from signaling.signing_keys import KeyRingError, key_ring_for

    try:
        config = Config.from_env()
        if not config.jwt_configured:
            raise ConfigError(
                "set the server's signing key (HARK_JWT_SECRET, HARK_JWT_KEYS or "
                "HARK_JWT_KEYS_FILE); a token signed with a random key would verify nowhere"
            )
        secrets = ClientSecrets(key_ring_for(config))
    except (ConfigError, KeyRingError) as exc:
        print(f"hark: {exc}", file=sys.stderr)
        return 2
    if args.ttl < 10:
        print("hark: --ttl must be at least 10 seconds", file=sys.stderr)
        return 2
    value, _ = secrets.mint({}, args.ttl, args.sub, scope=args.scope)
    print(value)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="start the Hark server (configured by HARK_* variables)")
    talk = commands.add_parser("call", help="call a running server with a wav as the microphone")
    talk.add_argument("--url", default=os.environ.get("HARK_URL", "http://127.0.0.1:8080"))
    talk.add_argument(
        "--api-key",
        default=os.environ.get("HARK_API_KEY", ""),
        help="API key to mint a client secret with (or HARK_API_KEY)",
    )
    talk.add_argument("--token", default="", help="an ek_ client secret to use directly")
    talk.add_argument("--wav", help="16-bit PCM wav to stream as the microphone")
    talk.add_argument("--text", help="send this as a typed user message instead of audio")
    talk.add_argument("--out", default="reply.wav", help="where to save the received audio")
    talk.add_argument("--instructions", help="session instructions (the assistant's persona)")
    talk.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the reply to finish"
    )
    talk.add_argument(
        "--tools", help="a JSON file with the session's function tools (a list, GA shape)"
    )
    talk.add_argument(
        "--tool-choice", default=None, help="auto, none, required, or a function's name"
    )
    talk.add_argument(
        "--tool-output",
        default=None,
        help="answer every tool call with this output, then ask for the spoken answer",
    )
    talk.add_argument("--conversation", help="continue this conversation (conv_…)")
    talk.add_argument("--persona", help="speak with this persona (e.g. ava)")
    talk.add_argument("--sub", help="the user the client secret is minted for")
    talk.add_argument(
        "--record", action="store_true", help="ask for the call to be recorded (HARK_RECORDING=1)"
    )
    mint = commands.add_parser("token", help="print an operator (or realtime) token")
    mint.add_argument("--scope", choices=("operator", "realtime"), default="operator")
    mint.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    mint.add_argument("--sub", default=None, help="who the token is for (revocable by sub)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "token":
        return token(args)
    return call(args)
