"""The emulator shims: each changes only what its gap needs, on a copy where a template is concerned."""

from __future__ import annotations

import json
from typing import Any

import pytest

from trickle_deploy.emulator_shims import (
    compression_off_as_remove,
    for_cloudformation,
    swagger_2_as_openapi_3,
)


@pytest.mark.parametrize(
    ("document", "sent"),
    [
        (
            {"swagger": "2.0", "info": {"title": "t", "version": "1"}, "paths": {"/": {}}},
            {
                "openapi": "3.0.1",
                "info": {"description": "", "title": "t", "version": "1"},
                "paths": {"/": {}},
            },
        ),
        ({"openapi": "3.0.1", "info": {"title": "t"}, "paths": {}}, None),  # already OpenAPI 3: as it was
    ],
)
def test_moto_gets_chalices_swagger_2_document_labelled_openapi_3(
    document: dict[str, Any], sent: dict[str, Any] | None
) -> None:
    params: dict[str, Any] = {"restApiId": "a1", "body": json.dumps(document).encode()}
    swagger_2_as_openapi_3(params)
    assert json.loads(params["body"]) == (sent or document)
    assert params["restApiId"] == "a1"


@pytest.mark.parametrize(
    ("operation", "sent"),
    [
        (
            {"op": "replace", "path": "/minimumCompressionSize", "value": ""},
            {"op": "remove", "path": "/minimumCompressionSize"},
        ),
        (  # a size is sent as it is
            {"op": "replace", "path": "/minimumCompressionSize", "value": "1024"},
            {"op": "replace", "path": "/minimumCompressionSize", "value": "1024"},
        ),
        ({"op": "replace", "path": "/binaryMediaTypes/0", "value": ""}, None),
    ],
)
def test_ministack_gets_compression_off_as_a_remove(
    operation: dict[str, str], sent: dict[str, str] | None
) -> None:
    params = {"restApiId": "a1", "patchOperations": [dict(operation)]}
    compression_off_as_remove(params)
    assert params["patchOperations"] == [sent or operation]


TEMPLATE: dict[str, Any] = {
    "Resources": {
        "RestAPI": {
            "Type": "AWS::ApiGateway::RestApi",
            "Properties": {"Body": {"info": {"title": "trickle"}}},
        },
        "RestAPIDeployment": {"Type": "AWS::ApiGateway::Deployment", "Properties": {}},
        "RestAPIapiStage": {"Type": "AWS::ApiGateway::Stage", "Properties": {}},
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"MetricName": "Errors"}},
        "ShareAlarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"Metrics": [{"Id": "share"}]}},
    },
    "Outputs": {"EndpointURL": {"Value": "x"}, "QueueUrl": {"Value": "y"}},
}


def test_each_emulator_gets_a_copy_of_the_template_without_what_it_cannot_create() -> None:
    original = json.dumps(TEMPLATE, sort_keys=True)

    moto = for_cloudformation(TEMPLATE, "moto")
    ministack = for_cloudformation(TEMPLATE, "ministack")

    assert set(moto["Resources"]) == {"RestAPI", "Queue", "Alarm", "ShareAlarm"}  # moto skips alarms
    assert moto["Resources"]["RestAPI"]["Properties"]["Name"] == "trickle"
    assert set(moto["Outputs"]) == {"QueueUrl"}
    assert set(ministack["Resources"]) == set(TEMPLATE["Resources"]) - {"ShareAlarm"}  # metric math
    assert ministack["Outputs"] == TEMPLATE["Outputs"]
    assert json.dumps(TEMPLATE, sort_keys=True) == original  # the template itself is untouched
