"""What the detectors take and what they leave: look-alikes pass untouched, an
operator's own category with its check works, and a detector that raises fails the
call closed (or open, when configured) while the next call is served."""

from __future__ import annotations

import json

import openai
import pytest

from tests.integration.guardrails.conftest import GUARDRAILS, guarded_models
from tests.support.http_clients import openai_client
from tests.support.sidecar import make_settings

#: Text no detector may take: it reaches the provider exactly as written.
LOOK_ALIKES = [
    "order 4111 1111 1111 1112 shipped",  # fails Luhn
    "order number 1234567812345678",  # fails Luhn
    "ref 1234 5678",
    "upgrade to version 1.2.3.4 or v10.0.0.1 today",
    "release 2.10.4.1 is out",
    "the meeting is 12:30:45 on 2026-12-06",
    "call extension 4521",
    "price: 1,299.00 USD, qty 3",
    "ISBN 978-3-16-148410-0",
    "IBAN DE00 1234 5678 9012 3456 78 is a typo",  # wrong check digits
    "SSN 000-12-3456 and 666-12-3456 are never issued",
    "user@localhost is not an address",
    "the key sk_test_1234 is a placeholder",
    "see <EMAIL_1> and [EMAIL] as written",
]


async def _sidecar(upstream_factory, sidecar_factory, **guardrails):
    gpt, claude = await upstream_factory("gpt"), await upstream_factory("claude")
    section = {**GUARDRAILS, **guardrails}
    sidecar = await sidecar_factory(
        make_settings(models=guarded_models(gpt, claude), guardrails=section)
    )
    return sidecar, gpt


@pytest.mark.parametrize("text", LOOK_ALIKES)
async def test_look_alikes_pass_untouched(upstream_factory, sidecar_factory, text: str) -> None:
    sidecar, gpt = await _sidecar(upstream_factory, sidecar_factory)
    async with openai_client(sidecar) as client:
        reply = await client.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": text}]
        )
    assert gpt.chat_requests[-1].body["messages"][-1]["content"] == text
    assert text in (reply.choices[0].message.content or "")


EMPLOYEE = {"pattern": r"EMP-\d{6}", "action": "pseudonymize"}


async def test_an_operator_category_with_its_check(upstream_factory, sidecar_factory) -> None:
    patterns = {"employee": {**EMPLOYEE, "check": "tests.support.guard_checks:employee_number"}}
    sidecar, gpt = await _sidecar(upstream_factory, sidecar_factory, patterns=patterns)
    text = "EMP-123457 and EMP-123456 met"  # even digit sum (22): one; odd (21): not one
    async with openai_client(sidecar) as client:
        reply = await client.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": text}]
        )
    sent = gpt.chat_requests[-1].body["messages"][-1]["content"]
    assert sent == "<EMPLOYEE_1> and EMP-123456 met"
    assert text in (reply.choices[0].message.content or "")


async def test_a_detector_that_raises_fails_the_call_closed(
    upstream_factory, sidecar_factory, json_logs
) -> None:
    patterns = {"employee": {**EMPLOYEE, "check": "tests.support.guard_checks:broken_on_nines"}}
    sidecar, gpt = await _sidecar(upstream_factory, sidecar_factory, patterns=patterns)
    async with openai_client(sidecar) as client:
        with pytest.raises(openai.InternalServerError) as refused:
            await client.chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": "EMP-999999 asks"}]
            )
        served = await client.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "EMP-123456 asks"}]
        )
    assert refused.value.status_code == 503
    assert refused.value.body["code"] == "guardrail_failed"
    assert "EMP-999999" not in str(refused.value.body)
    assert len(gpt.chat_requests) == 1
    assert "EMP-123456" in (served.choices[0].message.content or "")
    failed = [json.loads(line) for line in json_logs.lines if "detector failed" in line]
    assert failed and failed[0]["guard_category"] == "employee"
    assert failed[0]["error_type"] == "RuntimeError"


async def test_fail_open_sends_the_text_unchecked_for_that_category(
    upstream_factory, sidecar_factory
) -> None:
    patterns = {"employee": {**EMPLOYEE, "check": "tests.support.guard_checks:broken_on_nines"}}
    sidecar, gpt = await _sidecar(
        upstream_factory, sidecar_factory, patterns=patterns, on_error="fail_open"
    )
    async with openai_client(sidecar) as client:
        await client.chat.completions.create(
            model="gpt",
            messages=[{"role": "user", "content": "EMP-999999 and me@example.com"}],
        )
    # The broken category is skipped; the others still apply.
    assert gpt.chat_requests[-1].body["messages"][-1]["content"] == "EMP-999999 and <EMAIL_1>"
