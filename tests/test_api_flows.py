"""Flow Service API over real HTTP (uvicorn on port 0, httpx), a real store, blob store and intake.

Every answer is checked against the AFNOR Flow Service 1.3.0 OpenAPI file (tests/api_contract.py).
Following a flow to its acknowledgement through the whole daemon is in test_api_daemon.py.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.api.tokens import revoke_token
from gateway.samples import make_ubl
from gateway.store.models import ApiFlowInfoRow, FlowRow

from api_contract import Contract
from api_harness import MAX_BYTES, Api, start_api

CONTRACT = Contract()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    running = start_api(tmp_path, f"sqlite:///{tmp_path / 'gateway.db'}")
    yield running
    running.server.stop()
    running.store.close()


def flow_info(name: str = "invoice.xml", **extra: Any) -> str:
    return json.dumps({"name": name, "flowSyntax": "UBL", **extra})


def post_flow(
    client: httpx.Client, data: bytes, info: str | None = None, *, info_as_file: bool = False
) -> Any:
    files: dict[str, Any] = {"file": ("invoice.xml", data, "application/xml")}
    if info is not None:
        files["flowInfo"] = ("flowInfo.json", info, "application/json") if info_as_file else (None, info)
    return client.post("/v1/flows", files=files)


# -- deposit ------------------------------------------------------------------------------------------
def test_deposit_is_durable_before_the_answer(api: Api) -> None:
    data = make_ubl(number="API-1")
    with api.client() as client:
        response = post_flow(
            client, data, flow_info("INV API-1.xml", trackingId="track-1", processingRule="B2B")
        )
        body = CONTRACT.check("POST", "/v1/flows", response)
        assert response.status_code == 202
        assert body["sha256"] == hashlib.sha256(data).hexdigest()
        assert body["trackingId"] == "track-1" and body["name"] == "INV API-1.xml"
        flow_id = body["flowId"]
        # durable: the flow row, its blob and the declared info exist; no claim is left behind
        assert [(f.id, f.partner, f.source) for f in api.flows()] == [(flow_id, "demo", "api")]
        assert (api.root / "blobs").rglob("*") and api.server.context.blobs.read(body["sha256"]) == data
        assert not [p for p in (api.root / "claims").rglob("*") if p.is_file()]
        with api.store.reader() as conn:
            info = conn.execute(
                select(ApiFlowInfoRow.__table__).where(ApiFlowInfoRow.flow_id == flow_id)
            ).one()
        assert (info.tracking_id, info.processing_rule, info.flow_syntax) == ("track-1", "B2B", "UBL")

        response = client.get(f"/v1/flows/{flow_id}")
        flow = CONTRACT.check("GET", "/v1/flows/{flowId}", response)
        assert flow["acknowledgement"] == {"status": "Pending"}
        assert flow["processingRule"] == "B2B" and flow["processingRuleSource"] == "Input"
        assert flow["flowDirection"] == "Out" and flow["flowType"] == "Undefined"

        original = client.get(f"/v1/flows/{flow_id}", params={"docType": "Original"})
        CONTRACT.check("GET", "/v1/flows/{flowId}", original)
        assert original.content == data
        assert original.headers["content-disposition"] == 'attachment;filename="INV API-1.xml"'
        for doc_type in ("Acknowledgement", "Converted", "ReadableView"):
            missing = client.get(f"/v1/flows/{flow_id}", params={"docType": doc_type})
            assert CONTRACT.check("GET", "/v1/flows/{flowId}", missing)["errorCode"] == "MISSING_RESOURCE"
        bad = client.get(f"/v1/flows/{flow_id}", params={"docType": "Everything"})
        assert CONTRACT.check("GET", "/v1/flows/{flowId}", bad)["errorCode"] == "INVALID_REQUEST"


def test_flow_info_as_a_file_part_and_a_hostile_name(api: Api) -> None:
    """curl -F 'flowInfo=@info.json;type=application/json' sends a file part; names never leave out/."""
    with api.client() as client:
        response = post_flow(client, b"<x/>", flow_info("../../etc/passwd"), info_as_file=True)
        body = CONTRACT.check("POST", "/v1/flows", response)
    with api.store.reader() as conn:
        filename = conn.execute(select(FlowRow.filename).where(FlowRow.id == body["flowId"])).scalar_one()
    assert filename == "passwd" and body["name"] == "../../etc/passwd"


def test_same_file_twice_is_taken_as_a_duplicate(api: Api) -> None:
    data = make_ubl(number="API-DUP")
    with api.client() as client:
        first = CONTRACT.check("POST", "/v1/flows", post_flow(client, data, flow_info()))
        second = CONTRACT.check("POST", "/v1/flows", post_flow(client, data, flow_info()))
    assert first["flowId"] != second["flowId"]
    with api.store.reader() as conn:
        dup = conn.execute(select(FlowRow.duplicate_of).where(FlowRow.id == second["flowId"])).scalar_one()
    assert dup == first["flowId"]  # the pipeline answers it AlreadyExistingFlow, as for a dropped file


def test_checksum(api: Api) -> None:
    data = make_ubl(number="API-SUM")
    good = hashlib.sha256(data).hexdigest()
    with api.client() as client:
        wrong = post_flow(client, data, flow_info(sha256=hashlib.sha256(b"other").hexdigest()))
        assert wrong.status_code == 422
        assert CONTRACT.check("POST", "/v1/flows", wrong)["errorCode"] == "ChecksumMismatch"
        assert api.flows() == [] and api.leftovers() == []
        right = post_flow(client, data, flow_info(sha256=good))
        assert CONTRACT.check("POST", "/v1/flows", right)["sha256"] == good


# -- refusals: the documented error and nothing taken ------------------------------------------------
def test_tokens(api: Api) -> None:
    data = make_ubl(number="API-AUTH")
    cases = [
        (api.client(None), 401, "MISSING_TOKEN"),
        (api.client(None, Authorization="Basic ZGVtbzpkZW1v"), 401, "MISSING_TOKEN"),
        (api.client(None, Authorization="Bearer gwt_not-a-real-token"), 401, "INVALID_TOKEN"),
        (api.client("off"), 403, "FORBIDDEN_ACCESS"),  # partner disabled in the configuration
        (api.client("demo", **{"Organization-Id": "acme"}), 403, "FORBIDDEN_ACCESS"),
    ]
    for client, status, code in cases:
        with client:
            response = post_flow(client, data, flow_info())
            assert response.status_code == status, response.text
            assert CONTRACT.check("POST", "/v1/flows", response)["errorCode"] == code
            if status == 401:
                assert response.headers["www-authenticate"].startswith("Bearer")
    with api.store.transaction() as conn:
        assert revoke_token(conn, 1)  # demo's token
    with api.client() as client:
        assert post_flow(client, data, flow_info()).status_code == 401
    assert api.flows() == [] and api.leftovers() == []


def test_a_partner_sees_only_its_own_flows(api: Api) -> None:
    with api.client("acme") as acme:
        theirs = CONTRACT.check(
            "POST", "/v1/flows", post_flow(acme, b"<acme/>", flow_info(trackingId="t-acme"))
        )
    with api.client("demo") as demo:
        for doc_type in ("Metadata", "Original"):
            response = demo.get(f"/v1/flows/{theirs['flowId']}", params={"docType": doc_type})
            assert response.status_code == 404
            assert CONTRACT.check("GET", "/v1/flows/{flowId}", response)["errorCode"] == "MISSING_RESOURCE"
        found = demo.post("/v1/flows/search", json={"where": {"trackingId": "t-acme"}})
        assert CONTRACT.check("POST", "/v1/flows/search", found)["results"] == []


def test_oversize_bodies(api: Api) -> None:
    with api.client() as client:
        # a file over intake.max_flow_bytes inside an acceptable request
        response = post_flow(client, b"x" * (MAX_BYTES + 1), flow_info())
        assert response.status_code == 413
        assert CONTRACT.check("POST", "/v1/flows", response)["errorCode"] == "FILE_SIZE_EXCEEDED"
        # a declared length over the limit: answered before the body is sent
        conn = http.client.HTTPConnection("127.0.0.1", api.server.port, timeout=10)
        conn.putrequest("POST", "/v1/flows")
        for name, value in (("Authorization", f"Bearer {api.tokens['demo']}"), ("Content-Length", "999999999"),
                            ("Content-Type", "multipart/form-data; boundary=b")):  # fmt: skip
            conn.putheader(name, value)
        conn.endheaders()
        raw = conn.getresponse()
        huge = httpx.Response(raw.status, headers=raw.getheaders(), content=raw.read())
        conn.close()
        assert CONTRACT.check("POST", "/v1/flows", huge)["errorCode"] == "FILE_SIZE_EXCEEDED"

        # streamed (chunked, no length) past the limit: cut while reading
        def chunks() -> Iterator[bytes]:
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.xml"\r\n\r\n'
            for _ in range(40):
                yield b"y" * 65536

        streamed = client.post(
            "/v1/flows", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"}
        )
        assert streamed.status_code == 413
        CONTRACT.check("POST", "/v1/flows", streamed)
        search = client.post("/v1/flows/search", content=b"{" + b" " * 1_100_000 + b"}")
        assert CONTRACT.check("POST", "/v1/flows/search", search)["errorCode"] == "REQUEST_TOO_LARGE"
    assert api.flows() == [] and api.leftovers() == []


@pytest.mark.parametrize(
    ("files", "content", "content_type"),
    [
        (None, b'{"name": "x"}', "application/json"),
        ({"flowInfo": (None, flow_info())}, None, None),
        ({"file": ("a.xml", b"<a/>", "application/xml")}, None, None),
        ({"file": ("a.xml", b"<a/>", "application/xml"), "flowInfo": (None, "{not json")}, None, None),
        ({"file": ("a.xml", b"<a/>", "application/xml"), "flowInfo": (None, '["a"]')}, None, None),
        (
            {"file": ("a.xml", b"<a/>", "application/xml"), "flowInfo": (None, flow_info(flowSyntax="XML"))},
            None,
            None,
        ),
        (
            {"file": ("a.xml", b"<a/>", "application/xml"), "flowInfo": (None, '{"flowSyntax": "UBL"}')},
            None,
            None,
        ),
        ({"file": (None, "text, not a file"), "flowInfo": (None, flow_info())}, None, None),
        (None, b"--b\r\nContent-Disposition: form-data\r\n\r\nbroken", "multipart/form-data; boundary=b"),
        (None, b"garbage", "multipart/form-data"),
    ],
)
def test_bad_multipart(api: Api, files: Any, content: bytes | None, content_type: str | None) -> None:
    with api.client() as client:
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post("/v1/flows", files=files, content=content, headers=headers)
        assert response.status_code == 400, response.text
        CONTRACT.check("POST", "/v1/flows", response)
    assert api.flows() == [] and api.leftovers() == []


def test_two_files_are_refused(api: Api) -> None:
    with api.client() as client:
        response = client.post(
            "/v1/flows",
            files=[
                ("file", ("a.xml", b"<a/>", "application/xml")),
                ("file", ("b.xml", b"<b/>", "application/xml")),
                ("flowInfo", (None, flow_info())),
            ],  # fmt: skip
        )
        assert response.status_code == 400
        CONTRACT.check("POST", "/v1/flows", response)
    assert api.flows() == []


# -- search -------------------------------------------------------------------------------------------
def test_search_filters_and_cursor_paging(api: Api) -> None:
    with api.client() as client:
        ids = [
            CONTRACT.check("POST", "/v1/flows", post_flow(client, f"<i n='{n}'/>".encode(), flow_info(
                trackingId=f"t-{n}", **({"processingRule": "B2G"} if n % 2 else {})
            )))["flowId"]
            for n in range(5)
        ]  # fmt: skip

        def search(params: dict[str, Any], status: int = 200) -> Any:
            response = client.post("/v1/flows/search", json=params)
            assert response.status_code == status, response.text
            return CONTRACT.check("POST", "/v1/flows/search", response)

        assert [r["flowId"] for r in search({"where": {"trackingId": "t-3"}})["results"]] == [ids[3]]
        seen, cursor = [], None
        while True:
            page = search(
                {"limit": 2, "where": {"ackStatus": "Pending"}, **({"cursor": cursor} if cursor else {})}
            )
            assert len(page["results"]) <= 2
            seen += [r["flowId"] for r in page["results"]]
            cursor = page.get("nextCursor")
            if cursor is None:
                break
        assert seen == ids
        b2g = search({"where": {"processingRule": ["B2G"]}})["results"]
        assert [r["flowId"] for r in b2g] == [ids[1], ids[3]]
        assert len(search({"where": {"processingRule": ["Undefined"]}})["results"]) == 3
        assert search({"where": {"ackStatus": "Ok"}})["results"] == []
        assert search({"where": {"flowDirection": ["In"]}})["results"] == []
        assert len(search({"where": {"flowType": ["Undefined"]}})["results"]) == 5
        assert len(search({"where": {"updatedAfter": "2000-01-01T00:00:00Z"}})["results"]) == 5
        assert search({"where": {"updatedBefore": "2000-01-01T00:00:00Z"}})["results"] == []
        assert search({"where": {}}, 400)["errorCode"] == "INVALID_REQUEST"
        assert search({"where": {"ackStatus": "Done"}}, 400)["errorCode"] == "INVALID_REQUEST"
        assert search({"cursor": "bm90IGEgY3Vyc29y", "where": {"ackStatus": "Ok"}}, 400)
        assert search({"limit": 0, "where": {"ackStatus": "Ok"}}, 400)
        assert search({"limit": 101, "where": {"ackStatus": "Ok"}}, 400)
        assert search({"where": {"updatedAfter": "99999-01-01"}}, 400)
        not_json = client.post("/v1/flows/search", content=b"{", headers={"Content-Type": "application/json"})
        assert CONTRACT.check("POST", "/v1/flows/search", not_json)["errorCode"] == "INVALID_JSON"


def test_search_on_both_store_dialects(store_url: str, tmp_path: Path) -> None:
    api = start_api(tmp_path, store_url)
    try:
        with api.client() as client:
            for n in range(3):
                post_flow(client, f"<d n='{n}'/>".encode(), flow_info(trackingId="same"))
            first = client.post("/v1/flows/search", json={"limit": 1, "where": {"trackingId": "same"}}).json()
            second = client.post(
                "/v1/flows/search",
                json={"limit": 5, "cursor": first["nextCursor"], "where": {"trackingId": "same"}},
            ).json()
        assert len(first["results"]) == 1 and len(second["results"]) == 2 and "nextCursor" not in second
    finally:
        api.server.stop()
        api.store.close()


# -- webhooks (registration; sending is in test_api_webhooks.py) ------------------------------------
def test_webhook_registration(api: Api) -> None:
    with api.client() as demo, api.client("acme") as acme:
        created = demo.post(
            "/v1/webhooks", json={"callbackUrl": "https://hooks.example/x", "ackStatus": "Error"}
        )
        assert created.status_code == 201
        hook = CONTRACT.check("POST", "/v1/webhooks", created)
        assert len(__import__("base64").b64decode(hook["signingKey"])) == 32
        listed = CONTRACT.check("GET", "/v1/webhooks", demo.get("/v1/webhooks"))
        assert listed["count"] == 1 and listed["webhookIds"] == [hook["webhookId"]]
        assert listed["webhooks"][0]["callbackUrl"] == "https://hooks.example/x"
        assert "signingKey" not in listed["webhooks"][0]  # shown once, at creation
        assert CONTRACT.check("GET", "/v1/webhooks", acme.get("/v1/webhooks"))["count"] == 0
        other = acme.delete(f"/v1/webhooks/{hook['webhookId']}")
        assert other.status_code == 404
        CONTRACT.check("DELETE", "/v1/webhooks/{webhookUid}", other)
        deleted = demo.delete(f"/v1/webhooks/{hook['webhookId']}")
        assert deleted.status_code == 204
        CONTRACT.check("DELETE", "/v1/webhooks/{webhookUid}", deleted)
        assert demo.delete(f"/v1/webhooks/{hook['webhookId']}").status_code == 404
        assert demo.delete("/v1/webhooks/not-a-uuid").status_code == 400
        for bad in ({"callbackUrl": "ftp://x/y"}, {"callbackUrl": "https://u:p@x/y"}, {"flowTypes": []}):
            refused = demo.post("/v1/webhooks", json=bad)
            assert refused.status_code == 400
            CONTRACT.check("POST", "/v1/webhooks", refused)
        for n in range(10):
            assert demo.post("/v1/webhooks", json={"callbackUrl": f"http://127.0.0.1/{n}"}).status_code == 201
        assert demo.post("/v1/webhooks", json={"callbackUrl": "http://127.0.0.1/11"}).status_code == 400


# -- supervision, limits, errors ----------------------------------------------------------------------
def test_healthcheck_needs_no_token(api: Api) -> None:
    with api.client(None) as client:
        response = client.get(
            "/v1/healthcheck", headers={"Request-Id": "0b8f4d3e-1c2a-4e5f-8a9b-0c1d2e3f4a5b"}
        )
        assert CONTRACT.check("GET", "/v1/healthcheck", response) is None and response.status_code == 200
        assert response.headers["request-id"] == "0b8f4d3e-1c2a-4e5f-8a9b-0c1d2e3f4a5b"
        assert response.headers["cache-control"] == "no-store"
        assert client.get("/v1/nothing").json()["errorCode"] == "MISSING_RESOURCE"


def test_rate_limit_per_token(tmp_path: Path) -> None:
    api = start_api(
        tmp_path, f"sqlite:///{tmp_path / 'gateway.db'}", rate_limit_burst=3, rate_limit_per_second=0.01
    )
    try:
        with api.client() as demo, api.client("acme") as acme:
            where = {"where": {"ackStatus": "Ok"}}
            answers = [demo.post("/v1/flows/search", json=where) for _ in range(4)]
            assert [a.status_code for a in answers] == [200, 200, 200, 429]
            assert CONTRACT.check("POST", "/v1/flows/search", answers[-1])["errorCode"] == "TOO_MANY_REQUESTS"
            assert int(answers[-1].headers["retry-after"]) >= 1
            assert acme.post("/v1/flows/search", json=where).status_code == 200  # its own bucket
    finally:
        api.server.stop()
        api.store.close()


def test_internal_errors_never_leak(api: Api) -> None:
    with api.store.transaction() as conn:
        conn.exec_driver_sql("DROP TABLE api_flow_info")
    with api.client() as client:
        response = client.get("/v1/flows/20260101T000000000Z-0000000000")
        assert response.status_code == 500
        body = CONTRACT.check("GET", "/v1/flows/{flowId}", response)
        assert body == {"errorCode": "INTERNAL_ERROR", "errorMessage": "internal error; see the gateway log"}


def test_port_in_use_is_a_clear_error(api: Api, tmp_path: Path) -> None:
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match=f"api: cannot listen on 127.0.0.1:{api.server.port}"):
        start_api(tmp_path / "second", f"sqlite:///{tmp_path / 'second.db'}", port=api.server.port)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_listener(tmp_path: Path) -> None:
    cert, key = tmp_path / "api.pem", tmp_path / "api.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    api = start_api(tmp_path / "tls", f"sqlite:///{tmp_path / 'tls.db'}", tls_cert_file=str(cert),
                    tls_key_file=str(key))  # fmt: skip
    try:
        url = f"https://127.0.0.1:{api.server.port}"
        with httpx.Client(
            base_url=url, verify=ssl.create_default_context(cafile=str(cert)), timeout=20
        ) as client:
            assert client.get("/v1/healthcheck").status_code == 200
            answer = client.post(
                "/v1/flows/search", json={"where": {"ackStatus": "Ok"}},
                headers={"Authorization": f"Bearer {api.tokens['demo']}"},
            )  # fmt: skip
            assert CONTRACT.check("POST", "/v1/flows/search", answer)["results"] == []
        with pytest.raises(httpx.HTTPError), httpx.Client(timeout=5) as plain:
            plain.get(f"http://127.0.0.1:{api.server.port}/v1/healthcheck")
    finally:
        api.server.stop()
        api.store.close()


def test_unreadable_tls_files_are_a_clear_error(tmp_path: Path) -> None:
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot load TLS certificate/key"):
        start_api(tmp_path, f"sqlite:///{tmp_path / 'g.db'}", tls_cert_file=str(tmp_path / "none.pem"),
                  tls_key_file=str(tmp_path / "none.key"))  # fmt: skip


def test_console_routes_are_mounted_when_the_console_package_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook for gateway.console: its console_routes(ctx) land under /console, /v1 is untouched."""
    import importlib.machinery
    import types

    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    seen: list[Any] = []

    def console_routes(ctx: Any) -> list[Route]:
        seen.append(ctx)
        return [Route("/ping", lambda request: PlainTextResponse("console"))]

    module = types.ModuleType("gateway.console")
    module.__spec__ = importlib.machinery.ModuleSpec("gateway.console", None)
    module.console_routes = console_routes  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gateway.console", module)
    api = start_api(tmp_path, f"sqlite:///{tmp_path / 'g.db'}")
    try:
        with api.client(None) as client:
            assert client.get("/console/ping").text == "console"
            assert client.get("/v1/healthcheck").status_code == 200
        assert seen[0].store is api.store and callable(seen[0].ack_dir)
    finally:
        api.server.stop()
        api.store.close()


def test_webhooks_into_the_gateway_network_are_refused(tmp_path: Path) -> None:
    """SSRF guard (default): a callback on loopback, a private network or link-local is refused."""
    api = start_api(tmp_path, f"sqlite:///{tmp_path / 'g.db'}", webhook_allow_private_networks=False)
    try:
        with api.client() as client:
            for url in ("http://127.0.0.1:9464/metrics", "http://localhost/x", "https://10.1.2.3/hook",
                        "http://169.254.169.254/latest/meta-data", "http://[::1]/x", "http://0.0.0.0/x"):  # fmt: skip
                refused = client.post("/v1/webhooks", json={"callbackUrl": url})
                assert refused.status_code == 400, url
                assert (
                    "not a public address" in CONTRACT.check("POST", "/v1/webhooks", refused)["errorMessage"]
                )
            accepted = client.post("/v1/webhooks", json={"callbackUrl": "https://93.184.216.34/hook"})
            assert accepted.status_code == 201  # a public address (no DNS needed for a literal)
    finally:
        api.server.stop()
        api.store.close()


def test_reverse_proxy_mode_takes_the_client_address_from_the_proxy(tmp_path: Path) -> None:
    """Behind a trusted proxy, failed logins are counted per real client (X-Forwarded-For)."""
    api = start_api(tmp_path, f"sqlite:///{tmp_path / 'g.db'}", trusted_proxies=["127.0.0.1"])
    try:
        with api.client(None, Authorization="Bearer gwt_guess") as client:
            statuses = [
                client.get("/v1/webhooks", headers={"X-Forwarded-For": "192.0.2.10"}).status_code
                for _ in range(21)
            ]
            assert statuses[:20] == [401] * 20 and statuses[20] == 429  # that client guessed too often
            other = client.get("/v1/webhooks", headers={"X-Forwarded-For": "192.0.2.20"})
            assert other.status_code == 401  # another client behind the same proxy is not locked out
    finally:
        api.server.stop()
        api.store.close()
