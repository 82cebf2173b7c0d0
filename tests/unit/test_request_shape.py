"""A request's path and headers beyond its body (chalicelib/request_shape.py), as tables: what a
path template compiles to and renders for a body, and which headers a routes file may add."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import unquote

import pytest

from chalicelib import strict_json
from chalicelib.request_shape import (
    RESERVED_HEADERS,
    PathTemplate,
    Refusal,
    header_name_problem,
    header_problems,
    header_value_problem,
    reserved_headers,
    with_path,
)


def rendered(template: str, body: str) -> str | Refusal:
    """The path for a body as the API client has it: JSON text, read with numbers kept exact."""
    return PathTemplate.compile(template).render(strict_json.loads(body.encode()))


@pytest.mark.parametrize(
    ("template", "body", "path"),
    [
        ("/invoices", "{}", "/invoices"),
        ("/invoices/{item.invoice_id}", '{"item": {"invoice_id": "inv-7"}}', "/invoices/inv-7"),
        (
            "/customers/{keys.pk}/notes/{keys.sk}",
            '{"keys": {"pk": "c 1", "sk": 2}}',
            "/customers/c%201/notes/2",
        ),
        ("/a/{k}", '{"k": "a/b"}', "/a/a%2Fb"),
        ("/a/{k}", '{"k": "what?"}', "/a/what%3F"),
        ("/a/{k}", '{"k": "#frag"}', "/a/%23frag"),
        ("/a/{k}", '{"k": "100%"}', "/a/100%25"),
        ("/a/{k}", '{"k": "Zoë 東京"}', "/a/Zo%C3%AB%20%E6%9D%B1%E4%BA%AC"),
        ("/a/{k}", '{"k": "../admin"}', "/a/..%2Fadmin"),
        ("/a/{k}", '{"k": "..."}', "/a/..."),
        ("/a/{k}", '{"k": "a+b&c=d;e"}', "/a/a%2Bb%26c%3Dd%3Be"),
        ("/a/{k}", '{"k": "tilde~dot.dash-under_"}', "/a/tilde~dot.dash-under_"),
        ("/a/{k}", '{"k": 0}', "/a/0"),
        ("/a/{k}", '{"k": -12}', "/a/-12"),
        ("/a/{k}", '{"k": 123456789012345678901234567890.5}', "/a/123456789012345678901234567890.5"),
        ("/a/{k}", '{"k": 98765432109876543210}', "/a/98765432109876543210"),
        ("/a/{k}", '{"k": 1.50}', "/a/1.50"),
        ("/a/{k}", '{"k": 1e+21}', "/a/1E%2B21"),
        ("/a/{items[0].id}", '{"items": [{"id": "first"}]}', "/a/first"),
        ("/a/{join('-', [k, j])}", '{"k": "x", "j": "y"}', "/a/x-y"),
        ('/a/{"odd key"}', '{"odd key": "v"}', "/a/v"),
        ("/v1/{k}.json", '{"k": "report"}', "/v1/report.json"),
        ("/v1/{k}-{j}", '{"k": "a", "j": "b/c"}', "/v1/a-b%2Fc"),
        ("/literal%20space/{k}", '{"k": "x"}', "/literal%20space/x"),
        ("/", "{}", "/"),
    ],
)
def test_paths_rendered_from_the_body(template: str, body: str, path: str) -> None:
    assert rendered(template, body) == path


def test_each_value_stays_one_segment_for_any_character() -> None:
    every = "".join(chr(c) for c in range(32, 127)) + "é東😀"
    path = rendered("/x/{k}", strict_json.dumps({"k": every}))
    assert isinstance(path, str)
    assert path.count("/") == 2 and "?" not in path and "#" not in path
    assert unquote(path.removeprefix("/x/")) == every


def test_a_float_the_client_read_without_decimals_is_written_as_json_writes_it() -> None:
    assert PathTemplate.compile("/a/{k}").render({"k": 2.5}) == "/a/2.5"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{}", "path placeholder {keys.pk} is missing (or null)"),
        ('{"keys": {}}', "path placeholder {keys.pk} is missing (or null)"),
        ('{"keys": "flat"}', "path placeholder {keys.pk} is missing (or null)"),
        ('{"keys": {"pk": null}}', "path placeholder {keys.pk} is missing (or null)"),
        ('{"keys": {"pk": true}}', "path placeholder {keys.pk} is not a string or number (boolean)"),
        ('{"keys": {"pk": false}}', "path placeholder {keys.pk} is not a string or number (boolean)"),
        ('{"keys": {"pk": {"a": 1}}}', "path placeholder {keys.pk} is not a string or number (object)"),
        ('{"keys": {"pk": [1]}}', "path placeholder {keys.pk} is not a string or number (array)"),
        ('{"keys": {"pk": []}}', "path placeholder {keys.pk} is not a string or number (array)"),
        ('{"keys": {"pk": ""}}', "path placeholder {keys.pk} is '', which is no path segment"),
        ('{"keys": {"pk": "."}}', "path placeholder {keys.pk} is '.', which is no path segment"),
        ('{"keys": {"pk": ".."}}', "path placeholder {keys.pk} is '..', which is no path segment"),
    ],
)
def test_values_that_make_no_segment_are_refused_naming_the_placeholder(body: str, reason: str) -> None:
    assert rendered("/customers/{keys.pk}", body) == Refusal(reason)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"k": Decimal("NaN")}, "path placeholder {k} is not a finite number"),
        ({"k": float("inf")}, "path placeholder {k} is not a finite number"),
        ({"k": "\ud800"}, "path placeholder {k} holds a lone surrogate, which UTF-8 cannot carry"),
    ],
)
def test_values_no_message_should_hold_are_refused_too(document: object, reason: str) -> None:
    assert PathTemplate.compile("/a/{k}").render(document) == Refusal(reason)


def test_the_first_refused_placeholder_is_named() -> None:
    assert rendered("/a/{x}/{y}", '{"x": "ok", "y": null}') == Refusal(
        "path placeholder {y} is missing (or null)"
    )
    assert rendered("/a/{x}/{y}", '{"y": null}') == Refusal("path placeholder {x} is missing (or null)")


def test_an_expression_that_fails_on_the_body_is_refused_naming_it() -> None:
    refusal = rendered("/a/{length(k)}", '{"k": 5}')
    assert isinstance(refusal, Refusal)
    assert refusal.reason.startswith("path placeholder {length(k)} failed: ")


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("", "path '' must start with /"),
        ("invoices/{id}", "path 'invoices/{id}' must start with /"),
        ("https://x/{id}", "must start with /"),
        ("/a/{id", "has an empty placeholder or an unmatched brace"),
        ("/a/id}", "has an empty placeholder or an unmatched brace"),
        ("/a/{}", "has an empty placeholder or an unmatched brace"),
        ("/a/{{id}}", "has an empty placeholder or an unmatched brace"),
        ("/a/{id..x}", "path placeholder {id..x} is not a JMESPath expression: "),
        ("/a/{[}", "path placeholder {[} is not a JMESPath expression: "),
        ("/a b/{id}", "holds ' ', which a URL path cannot carry as it is"),
        ("/a?x=1/{id}", "holds '?', which a URL path cannot carry as it is"),
        ("/a#f", "holds '#', which a URL path cannot carry as it is"),
        ("/é/{id}", "holds 'é', which a URL path cannot carry as it is"),
        ("/100%/{id}", "holds '%', which a URL path cannot carry as it is"),
        ("/a\n/{id}", "holds '\\n', which a URL path cannot carry as it is"),
    ],
)
def test_templates_that_do_not_compile(template: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        PathTemplate.compile(template)
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "path", "joined"),
    [
        ("http://127.0.0.1:8090/v1", "/invoices/7", "http://127.0.0.1:8090/v1/invoices/7"),
        ("http://127.0.0.1:8090/v1/", "/invoices/7", "http://127.0.0.1:8090/v1/invoices/7"),
        ("https://api.example.com", "/a%2Fb", "https://api.example.com/a%2Fb"),
        ("https://api.example.com/", "/a", "https://api.example.com/a"),
        ("https://api.example.com/v1?tenant=9", "/a", "https://api.example.com/v1/a?tenant=9"),
    ],
)
def test_the_path_goes_after_the_url_s_own_path(url: str, path: str, joined: str) -> None:
    assert with_path(url, path) == joined


@pytest.mark.parametrize(
    ("auth", "key_header", "also_reserved"),
    [
        ("api_key", "X-Api-Key", {"x-api-key"}),
        ("api_key", "Authorization", {"authorization"}),
        ("basic", "x-api-key", {"authorization"}),
        ("oauth2_client_credentials", "x-api-key", {"authorization"}),
        ("none", "x-api-key", set()),
    ],
)
def test_the_auth_header_of_each_kind_is_reserved(
    auth: str, key_header: str, also_reserved: set[str]
) -> None:
    assert reserved_headers(auth, key_header) == RESERVED_HEADERS | also_reserved


def test_trickle_s_own_headers_are_reserved() -> None:
    assert set(RESERVED_HEADERS) == {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "idempotency-key",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("X-Source", True),
        ("x_tenant.key~1", True),
        ("!#$%&'*+-.^_`|~", True),
        ("", False),
        ("X Source", False),
        ("X-Source:", False),
        ("X-Süß", False),
        ("X-A\r\nX-B", False),
        ("(x)", False),
    ],
)
def test_header_names_are_tokens(name: str, ok: bool) -> None:
    assert (header_name_problem(name) is None) == ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("trickle", True),
        ("a b\tc", True),
        ("", True),
        ('!"#~', True),
        ("a\r\nX-Evil: 1", False),
        ("a\nb", False),
        ("a\x00b", False),
        ("a\x7fb", False),
        ("café", False),
        (" lead", False),
        ("trail\t", False),
    ],
)
def test_header_values_are_printable_without_line_breaks(value: str, ok: bool) -> None:
    problem = header_value_problem(value)
    assert (problem is None) == ok
    assert value.strip() == "" or value.strip() not in (problem or "")


RESERVED = reserved_headers("oauth2_client_credentials", "x-api-key")


@pytest.mark.parametrize(
    ("fixed", "secret", "problems"),
    [
        ({"X-Source": "trickle"}, ["X-Tenant-Key"], []),
        ({}, [], []),
        ({"Authorization": "Bearer x"}, [], ["headers: header 'Authorization' is set by Trickle itself"]),
        ({}, ["authorization"], ["secret_headers: header 'authorization' is set by Trickle itself"]),
        ({"Idempotency-Key": "1"}, [], ["headers: header 'Idempotency-Key' is set by Trickle itself"]),
        ({"CONTENT-TYPE": "text/plain"}, [], ["headers: header 'CONTENT-TYPE' is set by Trickle itself"]),
        ({}, ["Webhook-Signature"], ["secret_headers: header 'Webhook-Signature' is set by Trickle itself"]),
        ({"Host": "evil"}, [], ["headers: header 'Host' is set by Trickle itself"]),
        ({"X-A": "1", "x-a": "2"}, [], ["headers: header 'x-a' is given twice"]),
        ({}, ["X-K", "x-k"], ["secret_headers: header 'x-k' is given twice"]),
        ({"X-K": "1"}, ["x-K"], ["secret_headers: header 'x-K' is given in both headers and secret_headers"]),
        ({"X K": "1"}, [], ["headers: header 'X K' is not a header name"]),
        ({}, ["X:K"], ["secret_headers: header 'X:K' is not a header name"]),
        ({"X-A": "1\r\nX-B: 2"}, [], ["headers: header 'X-A': its value holds a line break"]),
        (
            {"Authorization": "x", "X-B": " y"},
            ["X B"],
            [
                "headers: header 'Authorization' is set by Trickle itself",
                "headers: header 'X-B': its value starts or ends with white space",
                "secret_headers: header 'X B' is not a header name",
            ],
        ),
    ],
)
def test_header_problems_name_the_header(
    fixed: dict[str, str], secret: list[str], problems: list[str]
) -> None:
    found = header_problems(fixed, secret, RESERVED)
    assert len(found) == len(problems), found
    for got, expected in zip(found, problems, strict=True):
        assert got.startswith(expected), got
