"""`camkit app`: the browser app on this machine (127.0.0.1 unless --host says otherwise)."""

from __future__ import annotations

import argparse
import threading

from camkit.cli.common import UsageError, add_model_options, check_device

DEFAULT_PORT = 7860


def app_command(args: argparse.Namespace) -> int:
    try:
        from camkit.app.ui import App, build
    except ImportError as error:
        raise UsageError(
            f"camkit app needs Gradio ({error.name} is missing): pip install 'camkit[app]'"
        ) from None
    check_device(args.device)
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: must be from 1 to 65535")
    if args.layer:
        raise UsageError("camkit app chooses the layer in the page: leave out --layer")
    try:
        app = App(args.model, args.weights, device=args.device, trust=args.trust_model)
    except ValueError as error:
        raise UsageError(str(error)) from None
    page = build(app)
    try:
        page.launch(
            server_name=args.host,
            server_port=args.port,
            prevent_thread_lock=True,
            quiet=True,
            share=False,
        )
    except OSError as error:
        raise UsageError(f"cannot serve on {args.host}:{args.port}: {error}") from None
    print(f"camkit: the app is at http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    try:
        threading.Event().wait()  # until Ctrl-C
    except KeyboardInterrupt:
        app.wait_idle(30)  # let a running question end: torch must not be mid-call at exit
        print("\ncamkit: app stopped", flush=True)
    finally:
        page.close()
        app.close()  # every session's files go with the app
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the command and its options."""
    parser = commands.add_parser(
        "app",
        help="explore a model's maps in the browser (pip install 'camkit[app]')",
        description="Start the camkit app (Gradio) on this machine: choose images, a model, a "
        "layer, methods and a target; see and download the maps.",
    )
    add_model_options(parser)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 7860)")
    parser.set_defaults(run=app_command)
