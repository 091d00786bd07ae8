"""pydantic-ai with ``OpenAIProvider(openai_client=axme_meter.AsyncOpenAI(...))``."""

from __future__ import annotations

import pytest

pytest.importorskip("pydantic_ai", reason="pydantic-ai is not installed (pip install 'pydantic-ai-slim[openai]')")

from pydantic_ai import Agent  # noqa: E402
from pydantic_ai.providers.openai import OpenAIProvider  # noqa: E402

import axme_meter  # noqa: E402
from axme_meter.demo._simulator import Simulator  # noqa: E402

AGENT = "agent://acme/production/pydantic-ai"


def _chat_model_class() -> type:
    from pydantic_ai.models import openai as models

    return getattr(models, "OpenAIChatModel", None) or models.OpenAIModel  # renamed in newer releases


async def test_chat_model_run_is_metered(simulator: Simulator) -> None:
    provider = OpenAIProvider(openai_client=axme_meter.AsyncOpenAI(base_url=simulator.base_url, api_key="sk-sim", max_retries=0))
    bot = Agent(_chat_model_class()("gpt-4o", provider=provider), instructions="Answer briefly.")
    with axme_meter.agent(AGENT), axme_meter.intent("int_pydantic_ai"):
        result = await bot.run("What is ticket 4711 about?")
    usage = result.usage  # a property in newer releases, a method in older ones
    usage = usage if hasattr(usage, "input_tokens") else usage()
    spent = axme_meter.spend()
    assert spent.by_intent["int_pydantic_ai"].calls == 1
    assert spent.by_agent[AGENT].tokens_in == usage.input_tokens
    assert spent.by_agent[AGENT].tokens_out == usage.output_tokens
    assert spent.cost_usd > 0


async def test_streamed_run_is_metered(simulator: Simulator) -> None:
    provider = OpenAIProvider(openai_client=axme_meter.AsyncOpenAI(base_url=simulator.base_url, api_key="sk-sim", max_retries=0))
    bot = Agent(_chat_model_class()("gpt-4o", provider=provider))
    with axme_meter.agent(AGENT), axme_meter.intent("int_pydantic_stream"):
        async with bot.run_stream("Draft a reply.") as run:
            text = await run.get_output()
    assert text
    spent = axme_meter.spend()
    assert spent.by_intent["int_pydantic_stream"].calls == 1 and spent.estimated_calls == 0


async def test_responses_model(simulator: Simulator) -> None:
    from pydantic_ai.models.openai import OpenAIResponsesModel

    provider = OpenAIProvider(openai_client=axme_meter.AsyncOpenAI(base_url=simulator.base_url, api_key="sk-sim", max_retries=0))
    bot = Agent(OpenAIResponsesModel("gpt-4o", provider=provider))
    with axme_meter.agent(AGENT), axme_meter.intent("int_pydantic_responses"):
        await bot.run("hi")
    assert axme_meter.spend().by_intent["int_pydantic_responses"].calls == 1
