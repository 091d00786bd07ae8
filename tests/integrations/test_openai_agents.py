"""OpenAI Agents SDK (``openai-agents``) driving ``axme_meter.AsyncOpenAI``: runs are metered per intent."""

from __future__ import annotations

import pytest

agents = pytest.importorskip("agents", reason="openai-agents is not installed (pip install openai-agents)")

import axme_meter  # noqa: E402
from axme_meter.demo._simulator import Simulator  # noqa: E402

AGENT = "agent://acme/production/agents-sdk"


@pytest.fixture(autouse=True)
def no_tracing() -> None:
    agents.set_tracing_disabled(True)  # the SDK would otherwise export traces to api.openai.com


async def test_default_client_responses_model(simulator: Simulator) -> None:
    client = axme_meter.AsyncOpenAI(base_url=simulator.base_url, api_key="sk-sim", max_retries=0)
    agents.set_default_openai_client(client, use_for_tracing=False)
    agents.set_default_openai_api("responses")
    bot = agents.Agent(name="researcher", instructions="Answer briefly.", model="gpt-4o")
    with axme_meter.agent(AGENT), axme_meter.intent("int_agents_responses"):
        result = await agents.Runner.run(bot, "What is ticket 4711 about?")
    assert isinstance(result.final_output, str) and result.final_output
    spent = axme_meter.spend()
    assert spent.by_intent["int_agents_responses"].calls == 1
    assert spent.by_agent[AGENT].cost_usd > 0
    assert spent.by_model["gpt-4o-2024-08-06"].tokens_out == result.context_wrapper.usage.output_tokens


async def test_chat_completions_model_streamed(simulator: Simulator) -> None:
    client = axme_meter.AsyncOpenAI(base_url=simulator.base_url, api_key="sk-sim", max_retries=0)
    model = agents.OpenAIChatCompletionsModel(model="gpt-4o", openai_client=client)
    bot = agents.Agent(name="writer", instructions="Write one line.", model=model)
    before = simulator.stats
    with axme_meter.agent(AGENT), axme_meter.intent("int_agents_chat"):
        run = agents.Runner.run_streamed(bot, "Draft a reply to ticket 4712.")
        async for _event in run.stream_events():
            pass
    assert run.final_output
    spent = axme_meter.spend()
    assert spent.by_intent["int_agents_chat"].calls == 1
    assert spent.estimated_calls == 0  # usage came from the injected usage chunk, not an estimate
    # The SDK did not ask for include_usage, so it sees none (as without axme_meter); the meter does.
    after = simulator.stats
    assert spent.by_agent[AGENT].tokens_out == after.billed_completion_tokens - before.billed_completion_tokens
    assert spent.by_agent[AGENT].tokens_in == after.billed_prompt_tokens - before.billed_prompt_tokens
