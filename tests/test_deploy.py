"""deploy/: the AWS Batch job definition and submission are valid requests for botocore's
models of RegisterJobDefinition and SubmitJob, and run the command this package has."""

from __future__ import annotations

import json
from pathlib import Path

import botocore.session
from botocore.validate import ParamValidator

from ddbshard.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


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
