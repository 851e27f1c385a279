"""`camkit app`: the browser app on this machine (127.0.0.1 unless --host says otherwise)."""

from __future__ import annotations

import argparse
import threading
from typing import TYPE_CHECKING, Any

from camkit.cli import COMMANDS
from camkit.cli.common import add_options, flag, job_from
from camkit.errors import UsageError
from camkit.jobs import AppJob
from camkit.jobs.fields import check_job

if TYPE_CHECKING:
    from camkit.app.ui import App  # Gradio is optional: imported when the command runs


def app_command(args: argparse.Namespace) -> int:
    """Run `camkit app` until Ctrl-C; returns the exit code."""
    job = job_from(args, AppJob)
    try:
        from camkit.app.ui import App, build
    except ImportError as error:
        raise UsageError(
            f"camkit app needs Gradio ({error.name} is missing): pip install 'camkit[app]'"
        ) from None
    check_job(job, flag)
    if job.layer:
        raise UsageError("camkit app chooses the layer in the page: leave out --layer")
    try:
        app = App(
            job.model,
            job.weights,
            device=job.device,
            trust=job.trust_model,
            prompts=job.prompt,
            seed=job.seed,
            in_order=job.weights_in_order,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:  # every session's files go with the app, however it ends
        _serve(app, build(app), job)
    finally:
        app.close()
    return 0


def _serve(app: App, page: Any, job: AppJob) -> None:
    """Serve the page until Ctrl-C (or a stop signal: camkit's entry point makes SIGTERM,
    SIGHUP and SIGQUIT a KeyboardInterrupt)."""
    try:
        page.launch(
            server_name=job.host,
            server_port=job.port,
            prevent_thread_lock=True,
            quiet=True,
            share=False,
        )
    except OSError as error:
        raise UsageError(f"cannot serve on {job.host}:{job.port}: {error}") from None
    try:  # a stop as soon as the line is out (before the wait begins) is a stop like any other
        print(f"camkit: the app is at http://{job.host}:{job.port}/ (Ctrl-C stops it)", flush=True)
        threading.Event().wait()  # until Ctrl-C or a stop signal
    except KeyboardInterrupt:
        app.wait_idle(30)  # let a running question end: torch must not be mid-call at exit
        print("\ncamkit: app stopped", flush=True)
    finally:
        page.close()


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the command and its options."""
    parser = commands.add_parser(
        "app",
        help=COMMANDS["app"],
        description="Start the camkit app (Gradio) on this machine: choose images, a model, a "
        "layer, methods and a target; see and download the maps.",
    )
    add_options(parser, AppJob)
    parser.set_defaults(run=app_command)
