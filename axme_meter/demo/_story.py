"""The seed's Friday night: a research agent that never marks a ticket done.

``open_tickets()`` is supposed to drop resolved tickets, but the agent writes
its answer to the wrong field, so the same eight tickets come back on every
pass and the loop spends money until something stops it. Each ticket is one
intent (``with axme_meter.intent(...)``) and costs two gpt-4o calls: a research
call with a long, mostly repeated prompt (so prompt caching shows up), and a
streamed reply draft. A cheap triage agent runs beside it with no policy, to
show that a block is per agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import openai

import axme_meter

RESEARCH_AGENT = "agent://demo/production/research-agent"
TRIAGE_AGENT = "agent://demo/production/triage-agent"


@dataclass(slots=True)
class Ticket:
    id: str
    subject: str
    body: str
    #: The bug: the agent sets ``answer`` but ``open_tickets`` checks ``resolution``.
    answer: str = ""
    resolution: str = ""
    passes: int = field(default=0)


_SUBJECTS = [
    ("T-4711", "Charged twice for the Pro plan", "I was billed twice this month for the Pro plan. Please refund one charge."),
    ("T-4712", "Cannot reset password", "The reset email never arrives. I checked spam. My account is on the team plan."),
    ("T-4713", "Invoice shows wrong VAT id", "Our invoice for October lists an old VAT id. We need a corrected invoice."),
    ("T-4714", "Shipping delayed two weeks", "Order 88412 was due on the 3rd and is still pending. Can you check its status?"),
    ("T-4715", "Upgrade failed with error 502", "Upgrading from Starter to Pro fails with a 502 error at the payment step."),
    ("T-4716", "Cancel subscription", "Please cancel our subscription at the end of the billing period and confirm by email."),
    ("T-4717", "Data export is empty", "The CSV export of our usage data contains only the header row since Tuesday."),
    ("T-4718", "Login loop on mobile", "On the mobile app the login screen comes back after every successful login."),
]

# A knowledge-base handbook the agent pastes into every research prompt: long and identical
# on every pass, which is exactly when OpenAI's prompt cache bills part of it at the cached rate.
HANDBOOK = "\n".join(
    f"Article {n}: when a customer reports a {topic}, check the account status, the billing history, "
    "the last five support requests and any open incident before you answer. Quote the policy, state the "
    "next step, give a realistic time frame, and never promise a refund the billing team has not approved."
    for n, topic in enumerate(
        ["billing issue", "login problem", "shipping delay", "invoice error", "upgrade failure", "cancellation",
         "data export bug", "mobile app bug", "payment failure", "security concern", "plan change", "account lock"]
        * 2,
        start=1,
    )
)
SYSTEM_PROMPT = "You are the research agent of the support team. Use the handbook below.\n\n" + HANDBOOK


def make_tickets() -> list[Ticket]:
    return [Ticket(tid, subject, body) for tid, subject, body in _SUBJECTS]


def open_tickets(tickets: list[Ticket]) -> list[Ticket]:
    """The buggy filter: ``resolution`` is never set, so every ticket stays open forever."""
    return [t for t in tickets if not t.resolution]


@dataclass(slots=True)
class Models:
    research: str = "gpt-4o"
    triage: str = "gpt-4o-mini"
    max_tokens: int | None = None  # set for --real, to keep a real bill small


def triage(client: openai.OpenAI, ticket: Ticket, models: Models) -> str:
    """One cheap classification call under the triage agent (no policy on it)."""
    extra = {"max_tokens": 5} if models.max_tokens else {}
    with axme_meter.agent(TRIAGE_AGENT):
        reply = client.chat.completions.create(
            model=models.triage,
            messages=[
                {"role": "system", "content": "Classify the ticket as billing, account, shipping or bug. One word."},
                {"role": "user", "content": f"{ticket.subject}\n{ticket.body}"},
            ],
            **extra,
        )
    return reply.choices[0].message.content or ""


def research_ticket(client: openai.OpenAI, ticket: Ticket, models: Models) -> None:
    """The research agent's work on one ticket: a research call, then a streamed reply draft."""
    extra = {"max_tokens": models.max_tokens} if models.max_tokens else {}
    with axme_meter.intent(f"int_{ticket.id.lower()}", ticket=ticket.id):
        notes = client.chat.completions.create(
            model=models.research,
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f"Ticket {ticket.id}: {ticket.subject}\n\n{ticket.body}\n\nResearch it."},
            ],
            **extra,
        )
        stream = client.chat.completions.create(
            model=models.research,
            messages=[
                {"role": "system", "content": "Draft a short, friendly reply to the customer from these notes."},
                {"role": "user", "content": notes.choices[0].message.content or ""},
            ],
            stream=True,
            **extra,
        )
        draft = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    ticket.answer = draft  # the bug: should have been ticket.resolution
    ticket.passes += 1
