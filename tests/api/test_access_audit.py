"""AccessRecorded appears exactly for the actions that must produce one (unmasking, a
recording reference, a search by CPF or customer code), with who/what/why/from where, and
never for masked reads; a customer reads "who accessed my data" in one call."""

from __future__ import annotations

from typing import Any

from api_world import CPF_A, RunningApi

PURPOSE = "Procon complaint 2026-118"


def audit_rows(api: RunningApi) -> list[tuple[Any, ...]]:
    api.settle()
    return api.query("SELECT actor, role, action, protocol_number, subject_ref, target, purpose, source_address"
                     " FROM access_log ORDER BY accessed_at, access_id")


def new_rows(api: RunningApi, before: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    rows = audit_rows(api)
    assert rows[:len(before)] == before
    return rows[len(before):]


def test_masked_reads_publish_nothing(api: RunningApi) -> None:
    start = api.log_end()
    with api.client("analyst") as c:
        assert c.get("/v1/contacts", params={"channel": "PHONE"}).status_code == 200
        assert c.get(f"/v1/contacts/{api.protocols['a1']}").status_code == 200
        assert c.get("/v1/requests").status_code == 200
        timeline = c.get(f"/v1/contacts/{api.protocols['a1']}").json()
    assert timeline["masked"] is True and timeline["customer"] is None
    assert "cpf_index" not in timeline["interaction"]
    assert all("customer" not in e["payload"] for e in timeline["events"])
    assert api.log_end() == start


def test_unmask_is_recorded_with_who_what_why_and_where(api: RunningApi) -> None:
    before = audit_rows(api)
    subject = api.runtime.sealer().index.cpf(CPF_A)
    with api.client("supervisor") as c:
        r = c.get(f"/v1/contacts/{api.protocols['a1']}", params={"unmask": True, "purpose": PURPOSE})
    assert r.status_code == 200
    assert r.json()["customer"]["cpf"] == "11144477735"
    assert new_rows(api, before) == [
        ("supervisor", "SUPERVISOR", "UNMASK", api.protocols["a1"], subject, None, PURPOSE, "127.0.0.1")]


def test_refused_unmasks_publish_nothing(api: RunningApi) -> None:
    start = api.log_end()
    with api.client("analyst") as c:  # the role may not
        assert c.get(f"/v1/contacts/{api.protocols['a1']}",
                     params={"unmask": True, "purpose": PURPOSE}).status_code == 403
    with api.client("supervisor") as c:  # no purpose given
        r = c.get(f"/v1/contacts/{api.protocols['a1']}", params={"unmask": True})
        assert r.status_code == 422 and r.json()["field"] == "purpose"
    assert api.log_end() == start


def test_search_by_cpf_and_by_customer_code_are_recorded(api: RunningApi) -> None:
    before = audit_rows(api)
    index = api.runtime.sealer().index
    with api.client("analyst") as c:
        by_cpf = c.get("/v1/contacts", params={"cpf": CPF_A, "purpose": PURPOSE})
        by_code = c.get("/v1/contacts", params={"customer_code": "C-b1", "purpose": PURPOSE})
    assert by_cpf.json()["total"] == 2 and by_code.json()["total"] == 1
    assert new_rows(api, before) == [
        ("analyst", "ANALYST", "SEARCH_BY_CPF", None, index.cpf(CPF_A), "contact search", PURPOSE, "127.0.0.1"),
        ("analyst", "ANALYST", "SEARCH_BY_CUSTOMER_CODE", None, index.customer_code("C-b1"), "contact search",
         PURPOSE, "127.0.0.1"),
    ]


def test_recording_reference_is_recorded(api: RunningApi) -> None:
    before = audit_rows(api)
    rec = api.recordings["a1"]
    with api.client("analyst") as c:
        r = c.get(f"/v1/contacts/{api.protocols['a1']}/recordings/{rec}",
                  params={"mode": "download", "purpose": PURPOSE})
    assert r.status_code == 200 and r.json()["media_uri"].endswith(f"{rec}.opus")
    assert new_rows(api, before) == [
        ("analyst", "ANALYST", "RECORDING_DOWNLOAD", api.protocols["a1"], api.runtime.sealer().index.cpf(CPF_A),
         rec, PURPOSE, "127.0.0.1")]


def test_a_customer_reads_who_accessed_their_data_and_only_theirs(api: RunningApi) -> None:
    with api.client("supervisor") as c:
        assert c.get(f"/v1/contacts/{api.protocols['a2']}",
                     params={"unmask": True, "purpose": PURPOSE}).status_code == 200
    api.settle()
    # the customer sees the role and purpose of each access, never the staff login or address
    mine = {(r["role"], r["action"], r["protocol_number"]) for r in
            api.client("customer").get("/v1/me/access-log").json()}
    assert ("SUPERVISOR", "UNMASK", api.protocols["a2"]) in mine
    assert ("ANALYST", "SEARCH_BY_CPF", None) in mine
    theirs = api.client("other-customer").get("/v1/me/access-log").json()
    assert ("ANALYST", "SEARCH_BY_CUSTOMER_CODE", None) in {
        (r["role"], r["action"], r["protocol_number"]) for r in theirs}  # their code was searched
    assert all(r["protocol_number"] not in (api.protocols["a1"], api.protocols["a2"]) for r in theirs)
    assert ("SUPERVISOR", "UNMASK", api.protocols["a2"]) not in {
        (r["role"], r["action"], r["protocol_number"]) for r in theirs}
