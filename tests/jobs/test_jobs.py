"""The jobs as library calls: what the command does, without the command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from camkit.cli import build_parser
from camkit.cli.common import add_options, flag, job_from
from camkit.data import sample_images
from camkit.errors import UsageError
from camkit.evaluation import metric_settings
from camkit.jobs import (
    Collected,
    EvaluateJob,
    ExplainJob,
    JobInterrupted,
    LayersJob,
    evaluate_dataset,
    explain_folder,
)
from camkit.jobs import explain as explain_module
from camkit.jobs.fields import check_job, options_of


def test_explain_folder_writes_what_the_command_writes_and_reports_failures(tmp_path) -> None:
    bad = tmp_path / "in" / "bad.png"
    bad.parent.mkdir()
    bad.write_text("not an image")
    good = bad.with_name("cross.png")
    good.write_bytes(sample_images()[0].read_bytes())
    progress = Collected()
    job = ExplainJob(inputs=(str(good), str(bad)), out=tmp_path / "out", methods=("gradcam",))
    result = explain_folder(job, progress)
    assert (result.inputs, result.written, result.failures) == (2, 3, 1)
    assert progress.done == progress.total == 2
    assert len(progress.failures) == 1
    assert "bad.png: not a readable image" in progress.failures[0]
    stem = good.stem
    summary = json.loads((tmp_path / "out" / f"{stem}.json").read_text())
    assert summary["methods"] == ["gradcam"]
    assert summary["files"]["grid"] == f"{stem}_grid.png"


def test_a_job_that_cannot_run_is_refused_before_any_work_naming_the_field(tmp_path) -> None:
    with pytest.raises(UsageError, match=r"^alpha 2.0: must be a number from 0 to 1"):
        explain_folder(ExplainJob(alpha=2.0, out=tmp_path / "o"))
    with pytest.raises(UsageError, match=r"^--top 0: must be at least 1"):
        check_job(ExplainJob(top=0), flag)  # the command names it by its flag
    with pytest.raises(UsageError, match="unknown metric 'aopc'"):
        EvaluateJob(metrics=("aopc",)).check()
    with pytest.raises(UsageError, match=r"^steps 0: must be at least 1"):
        EvaluateJob(settings={"steps": 0}).check()
    with pytest.raises(UsageError, match=r"^steps 'many': must be a number"):
        EvaluateJob(settings={"steps": "many"}).check()
    with pytest.raises(UsageError, match=r"^unknown setting 'stpes'"):
        EvaluateJob(settings={"stpes": 4}).check()
    assert not (tmp_path / "o").exists()


def test_ctrl_c_in_a_job_raises_job_interrupted_with_what_was_done(tmp_path, monkeypatch) -> None:
    real = explain_module.explain_batches

    def one_batch_then_interrupt(*args, **kwargs):
        stream = real(*args, **kwargs)
        yield next(stream)
        raise KeyboardInterrupt

    monkeypatch.setattr(explain_module, "explain_batches", one_batch_then_interrupt)
    job = ExplainJob(out=tmp_path / "o", methods=("cam",), batch_size=2, workers=0)
    with pytest.raises(JobInterrupted) as interrupted:
        explain_folder(job)
    assert interrupted.value.result.done == 2
    assert interrupted.value.result.written == 6


def test_evaluate_dataset_returns_the_report_and_the_files(tmp_path) -> None:
    job = EvaluateJob(
        out=tmp_path,
        methods=("cam",),
        metrics=("drop", "deletion"),
        limit=4,
        workers=0,
        settings={"steps": 4},
    )
    result = evaluate_dataset(job)
    assert result.report is not None
    assert result.report.info["images"] == 4
    assert result.report.info["steps"] == 4
    assert result.files == ["results.md", "results.csv", "results.json", "deletion.png"]
    assert all((tmp_path / name).is_file() for name in result.files)


def test_a_one_batch_evaluation_moves_its_progress_method_by_method(tmp_path) -> None:
    # the default run is one batch: told per method, its bar moves and shows the time left
    class Told(Collected):
        def __init__(self) -> None:
            super().__init__()
            self.steps: list[int] = []

        def advance(self, count: int = 1) -> None:
            super().advance(count)
            self.steps.append(count)

    told = Told()
    job = EvaluateJob(
        out=tmp_path, methods=("cam", "gradcam", "eigencam"), metrics=("drop",), limit=7, workers=0
    )
    evaluate_dataset(job, told)
    assert told.steps == [2, 2, 3]  # whole shares of the 7 images, one per method
    assert told.done == told.total == 7


@pytest.mark.parametrize("job", [ExplainJob, EvaluateJob, LayersJob])
def test_the_parser_has_a_flag_for_every_field_and_gives_the_job_back(job) -> None:
    parser = argparse.ArgumentParser()
    add_options(parser, job)
    flags = {a.dest for a in parser._actions}
    assert {field.name for field, _ in options_of(job)} <= flags
    assert job_from(parser.parse_args([]), job) == job()  # the defaults are the job's


def test_every_metric_setting_with_a_flag_is_an_evaluate_flag() -> None:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    evaluate = commands.choices["evaluate"]
    flags = {option for action in evaluate._actions for option in action.option_strings}
    wanted = {flag(s.name) for s in metric_settings().values() if s.flag}
    assert wanted == {
        "--steps",
        "--tolerance",
        "--sanity-images",
        "--sanity-costly-images",
        "--top-k",
        "--complexity-eps",
        "--fc-runs",
        "--fc-subset",
        "--sensitivity-samples",
        "--sensitivity-radius",
        "--lipschitz-samples",
        "--lipschitz-std",
        "--order-groups",
        "--mc-samples",
        "--patch",
        "--regions",
        "--sn-sizes",
        "--sn-runs",
        "--infidelity-samples",
        "--infidelity-std",
        "--sufficiency-threshold",
        "--stability-samples",
        "--stability-radius",
        "--ns-eps",
        "--invariance-shift",
        "--continuity-steps",
        "--smprt-samples",
        "--irof-segments",
    }
    assert wanted | {"--seed"} <= flags


def test_options_read_from_the_command_are_typed(tmp_path) -> None:
    parser = argparse.ArgumentParser()
    add_options(parser, ExplainJob)
    args = parser.parse_args(
        [
            "a.png",
            "--methods",
            "cam,gradcam",
            "--mean",
            "0",
            "0",
            "0",
            "--out",
            str(tmp_path),
            "--ray",
        ]
    )
    job = job_from(args, ExplainJob)
    assert job.inputs == ("a.png",)
    assert job.methods == ("cam", "gradcam")
    assert job.mean == (0.0, 0.0, 0.0)
    assert job.out == Path(tmp_path)
    assert job.ray == ""  # --ray alone: RAY_ADDRESS's cluster, or a local one


def test_an_error_without_a_message_is_still_one_line(tmp_path) -> None:
    """Five places quoted an error's first line as str(error).splitlines()[0]: an exception
    with an empty message became an IndexError traceback there."""
    import camkit
    from camkit.methods import unregister

    @camkit.register("silent-failure")
    class SilentFailure(camkit.Explainer):
        needs_gradients = False

        def weigh(self, evidence):
            raise ValueError  # no message at all

    try:
        progress = Collected()
        job = EvaluateJob(
            out=tmp_path, methods=("silent-failure", "cam"), metrics=("drop",), limit=2, workers=0
        )
        result = evaluate_dataset(job, progress)
        assert progress.failures == ["silent-failure: ValueError"]
        assert result.report is not None
        assert list(result.report.rows) == ["cam"]
    finally:
        unregister("silent-failure")


@pytest.mark.parametrize("command", ["explain", "evaluate", "layers", "app"])
def test_every_command_prints_its_help(command, capsys) -> None:
    from camkit.cli import main

    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    assert "--model" in text
    assert "--device" in text


def test_target_and_top_exclude_each_other_on_the_command_line(capsys) -> None:
    from camkit.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["explain", "--target", "1", "--top", "2"])
    assert stopped.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_default_metrics_leave_out_the_costly_ones_and_all_has_them() -> None:
    from types import SimpleNamespace

    from camkit.evaluation import METRICS
    from camkit.jobs.evaluate import metrics_for
    from camkit.jobs.options import parse_names

    data: Any = SimpleNamespace(masked=True)
    default = metrics_for(EvaluateJob(), data)
    assert "faithfulness-correlation" not in default
    assert {"deletion", "sanity", "sparseness", "roc-auc"} <= set(default)
    assert metrics_for(EvaluateJob(metrics=parse_names("all")), data) == list(METRICS)
    unmasked: Any = SimpleNamespace(masked=False)
    assert "roc-auc" not in metrics_for(EvaluateJob(), unmasked)
