"""Client side: the drop-in metered openai clients."""

from ._call import EstimatedPriceWarning, UnpricedCallWarning
from ._clients import AsyncAzureOpenAI, AsyncOpenAI, AzureOpenAI, OpenAI

__all__ = ["AsyncAzureOpenAI", "AsyncOpenAI", "AzureOpenAI", "EstimatedPriceWarning", "OpenAI", "UnpricedCallWarning"]
