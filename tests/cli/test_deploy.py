"""deploy/: the AWS Batch job definition and submission are valid requests for botocore's
models of RegisterJobDefinition and SubmitJob, and run the command this package has."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest
from botocore.validate import ParamValidator

from ddbshard.cli import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _validate(operation: str, request: dict[str, object]) -> None:
    model = botocore.session.get_session().get_service_model("batch")
    report = ParamValidator().validate(request, model.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


def test_job_definition_is_a_valid_request() -> None:
    request = json.loads((DEPLOY / "job-definition.json").read_text())
    _validate("RegisterJobDefinition", request)
    command = request["containerProperties"]["command"]
    # Batch substitutes Ref::config; the rest must parse as our CLI
    args = [request["parameters"]["config"] if a == "Ref::config" else a for a in command]
    parsed = build_parser().parse_args(args)
    assert parsed.command == "split"


def test_array_submission_is_a_valid_request() -> None:
    request = json.loads((DEPLOY / "submit-job.json").read_text())
    _validate("SubmitJob", request)
    assert request["arrayProperties"]["size"] >= 2


def test_iam_policy_names_the_s3_actions_split_uses() -> None:
    policy = json.loads((DEPLOY / "iam-policy.json").read_text())
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    for needed in ("s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:AbortMultipartUpload"):
        assert needed in actions


def test_the_wheel_the_dockerfile_builds_runs_the_job(tmp_path: Path) -> None:
    """No Docker engine runs here, so the image itself is not built; this runs what its two
    stages do: the builder's `maturin build` command, then the wheel installed on its own
    (not the editable checkout) and the demo run from it, outside the repository."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    build = "maturin build --release --strip -o /wheels"
    assert f"RUN {build}" in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "ddbshard"]' in dockerfile
    maturin = Path(sys.executable).with_name("maturin")
    if not maturin.exists():
        pytest.skip("maturin is not installed beside this Python (run through `make test`)")
    wheels = tmp_path / "wheels"
    argv = [str(maturin), *build.split()[1:-1], str(wheels), "-q"]
    subprocess.run(argv, cwd=DEPLOY.parent, check=True, capture_output=True)
    (wheel,) = wheels.glob("ddbshard-*.whl")
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    subprocess.run([*pip, "--target", str(site), str(wheel)], check=True, capture_output=True)
    # The wheel first on the path; its dependencies from this environment.
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import ddbshard, ddbshard._core; print(ddbshard.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(site))
    demo = subprocess.run(
        [sys.executable, "-m", "ddbshard", "demo", str(tmp_path / "demo")],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    summary = json.loads((tmp_path / "demo" / "_summary.json").read_text())
    assert summary["items"]["written"] > 0
