"""The runaway-loop demo and the simulated OpenAI endpoint it runs against.

Needs the ``gateway`` extra (Starlette, uvicorn, rich). Import the pieces from
their modules (:mod:`axme_meter.demo._simulator`, ``_runner``) so that importing
this package stays cheap.
"""
