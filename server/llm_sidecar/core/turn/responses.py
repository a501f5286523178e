"""The response kind of call (OpenAI's Responses API): a chat turn whose conversation
is a chain of stored responses rather than a thread.

``previous_response_id`` names the response it continues: the chain of that response
and its ancestors (bounded, see :func:`~llm_sidecar.core.state.responses.context_of`)
comes before the new input. The answer is stored as a response of its own, with the
call's bill, unless the caller asked for ``store: false``. Lookups go through the
caller's own store, so another user's id is one that does not exist.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from llm_sidecar.core.state.responses import (
    ResponseBounds,
    StoredResponse,
    UserResponses,
    context_of,
)
from llm_sidecar.core.turn.chat import ChatCall
from llm_sidecar.core.turn.checks import check_tool_results, unanswered_tool_results
from llm_sidecar.core.turn.pipeline import Answer
from llm_sidecar.core.vocabulary.context import UserExecutionContext
from llm_sidecar.core.vocabulary.errors import InvalidRequestError, NotFoundError
from llm_sidecar.core.vocabulary.models import (
    AskResult,
    ChatMessage,
    Completion,
    ResponseInput,
)


class ResponseCall(ChatCall):
    """One response of one user: a chat turn after its chain, stored when answered."""

    __slots__ = ("_ancestors", "_bounds", "_new", "_response", "_responses")

    def __init__(
        self,
        ctx: UserExecutionContext,
        response: ResponseInput,
        *,
        responses: UserResponses,
        bounds: ResponseBounds,
        **chat: Any,
    ) -> None:
        inp = dataclasses.replace(response.inp, skip_history=True)
        super().__init__(ctx, inp, **chat)
        self._response = response
        self._responses = responses
        self._bounds = bounds
        self._new = inp.messages
        self._ancestors: tuple[str, ...] = ()

    def thread(self) -> tuple[str, str] | None:
        return None  # the chain is the conversation; no thread is read or extended

    async def prepare(self) -> None:
        """The chain before the new input; a tool result must answer a call in it."""
        previous = self._response.previous_response_id
        context: list[ChatMessage] = []
        if previous is not None:
            chain = await self._responses.chain(previous)
            if chain is None:
                raise NotFoundError("previous_response_id", "response")
            context = context_of(chain, self._bounds.max_chain_bytes)
            # Continuing this response reads it and these: max_chain responses in all.
            lineage = (*chain[-1].ancestors, previous)
            self._ancestors = lineage[len(lineage) - self._bounds.max_chain + 1 :]
        pending = unanswered_tool_results(self._new)
        if pending:
            try:
                check_tool_results(pending, context)
            except InvalidRequestError:
                raise InvalidRequestError(
                    "input", "a function_call_output answers no function call before it"
                ) from None
        carried = self._response.carried
        self.inp = dataclasses.replace(self.inp, messages=(*context, *self._new, *carried))
        await super().prepare()

    def _answer(self, result: AskResult, completion: Completion) -> Answer[AskResult]:
        """The result, and the response to store (none with ``store: false``)."""
        if not self._response.store:
            return Answer(result)
        answer = ChatMessage("assistant", result.text, tool_calls=result.tool_calls)
        render = self._response.render
        stored = StoredResponse(
            id=self._response.response_id,
            session_id=self.session_id,
            created_at=time.time(),
            ancestors=self._ancestors,
            input=self._new,
            output=(*self._response.carried, answer),
            view=b"" if render is None else render(result, self._response.records),
        )
        return Answer(result, stored=stored)
